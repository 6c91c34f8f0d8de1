"""Blue-green rollout under load: failed requests, latency during the switch, time until all traffic moved.

Run against a baked project (its package is imported from src/, nothing is installed); needs nginx:

    python benchmarks/bench_rollout.py --project /tmp/gitops-ml-demo/fraud-detection
    python benchmarks/bench_rollout.py --project P --bentos fraud_detection_service:aaa fraud_detection_service:bbb \
        --bentoml-home P/tmp/bentoml           # two real packaged bentos instead of the stand-ins
    python benchmarks/bench_rollout.py --project P --rate 200 --concurrency 8 --rounds 3 --json rollout.json

Each round, in a scratch git repo holding a copy of the project's bentos/deployment.yaml (free loopback
ports): release A to blue, then under load: `set --bento B --commit` + `apply` (release: start green,
/readyz, smoke, nginx reload), then `git revert HEAD` + `apply` (rollback: green still warm, a switch).
The load generator sends a fixed number of requests to 127.0.0.1 only, at a fixed rate, with a time
limit, and stops by itself. Without --bentos it builds two stand-in bentos (same HTTP contract as the
real service) in a temporary BENTOML_HOME. Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


class Scratch:
    """A git repo with the project's state file (free ports) and the project's deploy CLI."""

    def __init__(self, project: Path, root: Path, env: dict[str, str], grace_s: float, ports: list[int]) -> None:
        self.project, self.root, self.env = project, root, env
        self.state = root / "bentos" / "deployment.yaml"
        self.state.parent.mkdir(parents=True)
        import yaml

        state = yaml.safe_load((project / "bentos" / "deployment.yaml").read_text())
        blue, green, self.proxy_port = ports
        state["live"] = None
        state["slots"] = {"blue": {"bento": None, "port": blue}, "green": {"bento": None, "port": green}}
        state["proxy"]["port"] = self.proxy_port
        state["checks"]["grace_period_s"] = grace_s
        self.state.write_text(yaml.safe_dump(state, sort_keys=False))
        self.git("init", "-q", "-b", "main")
        self.git("add", "-A")
        self.git("commit", "-qm", "initial state")

    def git(self, *args: str) -> None:
        ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
        subprocess.run(["git", "-C", str(self.root), *ident, *args], check=True, capture_output=True)

    def deploy(self, *args: str) -> str:
        done = subprocess.run([sys.executable, str(self.project / "tools" / "deploy.py"), "--state",
                               str(self.state), *args], capture_output=True, text=True, env=self.env, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"deploy {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def timed(self, *args: str) -> tuple[float, float, str]:
        start = time.monotonic()
        out = self.deploy(*args)
        return start, time.monotonic(), out


def engine_timings(output: str) -> dict[str, float]:
    """The apply command's own report: `timings: started 0.21s, checked 3.78s, switched 3.85s, ...`."""
    found = re.search(r"timings: (.*)", output)
    if not found:
        return {}
    return {name: float(value) for name, value in re.findall(r"(\w+) ([\d.]+)s", found.group(1))}


def one_round(args: argparse.Namespace, project: Path, tags: tuple[str, str], env: dict[str, str],
              workdir: Path, number: int) -> dict[str, Any]:
    from importlib import import_module

    package = args.package
    loadgen = import_module("tools.loadgen")
    checks = import_module(f"{package}.deploy.checks")
    ports = import_module(f"{package}.deploy.runtime").free_ports(3)

    scratch = Scratch(project, workdir / f"round-{number}", env, args.grace, ports)
    first, second = tags
    try:
        scratch.deploy("set", "--bento", first, "--commit")
        scratch.deploy("apply")
        os.environ["BENTOML_HOME"] = env["BENTOML_HOME"]
        _, smoke = checks.load_smoke_requests(checks.bento_info(first))
        body = smoke[0]["body"]
        url = f"http://127.0.0.1:{scratch.proxy_port}{smoke[0]['path']}"
        run = loadgen.LoadRun(url, body, requests=int(args.rate * args.seconds), max_seconds=args.seconds,
                              concurrency=args.concurrency, rate=args.rate).start()
        time.sleep(args.settle)
        scratch.deploy("set", "--bento", second, "--commit")
        release = scratch.timed("apply")
        time.sleep(args.settle)
        scratch.git("revert", "--no-edit", "HEAD")
        rollback = scratch.timed("apply")
        time.sleep(args.settle)
        samples = run.stop()
    finally:
        scratch.deploy("stop")
    result: dict[str, Any] = {"overall": loadgen.summarize(samples)}
    for name, (begin, end, out), new_slot in (("release", release, "green"), ("rollback", rollback, "blue")):
        figures = loadgen.summarize(samples, (begin, end), new_slot)
        figures["engine"] = engine_timings(out)
        result[name] = figures
    return result


def build_standins(project: Path, package: str, home: Path) -> tuple[str, str]:
    from importlib import import_module

    standin = import_module("support.standin")
    work = home.parent / "standins"
    return (standin.build_standin(work, "bench-a", scale=0.5, bentoml_home=home),
            standin.build_standin(work, "bench-b", scale=0.25, bentoml_home=home))


def fmt(value: Any, unit: str = "") -> str:
    return "n/a" if value is None else f"{value}{unit}"


def report(rounds: list[dict[str, Any]]) -> None:
    print(f"{'round':<6}{'phase':<10}{'requests':>9}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'cmd s':>8}{'all new s':>11}{'reload s':>10}")
    for number, result in enumerate(rounds, 1):
        for phase in ("release", "rollback"):
            f = result[phase]
            engine = f["engine"]
            reload_s = round(engine["switched"] - engine["checked"], 3) if {"switched", "checked"} <= set(engine) \
                else None
            print(f"{number:<6}{phase:<10}{f['window_requests']:>9}{f['window_failed']:>8}"
                  f"{fmt(f['window_p50_ms']):>9}{fmt(f['window_p99_ms']):>9}{fmt(f['window_max_ms']):>9}"
                  f"{f['window_s']:>8.2f}{fmt(f['all_on_new_s']):>11}{fmt(reload_s):>10}")
        o = result["overall"]
        print(f"{number:<6}{'overall':<10}{o['requests']:>9}{o['failed']:>8}{fmt(o['p50_ms']):>9}"
              f"{fmt(o['p99_ms']):>9}{fmt(o['max_ms']):>9}   ({fmt(o.get('throughput_rps'))} req/s)")
    failed = sum(r["overall"]["failed"] for r in rounds)
    p99s = [r[p]["window_p99_ms"] for r in rounds for p in ("release", "rollback") if r[p]["window_p99_ms"]]
    moves = [r[p]["all_on_new_s"] for r in rounds for p in ("release", "rollback") if r[p]["all_on_new_s"]]
    print(f"\nfailed requests: {failed} of {sum(r['overall']['requests'] for r in rounds)}")
    if p99s:
        print(f"p99 during switch (median of rounds): {statistics.median(p99s):.1f} ms")
    releases = [r["release"]["all_on_new_s"] for r in rounds if r["release"]["all_on_new_s"]]
    rollbacks = [r["rollback"]["all_on_new_s"] for r in rounds if r["rollback"]["all_on_new_s"]]
    if releases and rollbacks and moves:
        print(f"command -> all traffic on the new slot: release {statistics.median(releases):.2f} s, "
              f"rollback {statistics.median(rollbacks):.2f} s (median)")
    print("'cmd s' counts the whole `deploy.py apply` process, Python start-up included; 'reload s' is the "
          "engine's own nginx reload -> new slot confirmed.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True, help="a baked project")
    parser.add_argument("--package", help="its Python package (default: from src/)")
    parser.add_argument("--bentos", nargs=2, metavar=("A", "B"), help="two bento tags (default: stand-ins)")
    parser.add_argument("--bentoml-home", type=Path, help="the store holding --bentos")
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=90.0, help="time limit of each round's load")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds of load before and after each command")
    parser.add_argument("--grace", type=float, default=300.0, help="grace period in the scratch state")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    project = args.project.resolve()
    if args.package is None:
        args.package = next(p.name for p in (project / "src").iterdir() if (p / "deploy").is_dir())
    # the library, the tools (load generator) and the test scaffolding (stand-in bentos) of the project
    sys.path[:0] = [str(project / "src"), str(project), str(project / "tests")]
    from importlib import import_module

    try:
        import_module(f"{args.package}.deploy.proxy").nginx_binary()
    except Exception as error:  # DeployError: no nginx on this machine
        print(f"cannot run: {error}", file=sys.stderr)
        return 3

    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as scratch:
        workdir = Path(scratch)
        home = (args.bentoml_home or workdir / "bentoml").resolve()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(project / "src"),
                                                                        os.environ.get("PYTHONPATH")])),
               "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
        tags = tuple(args.bentos) if args.bentos else build_standins(project, args.package, home)
        rounds = [one_round(args, project, tags, env, workdir, n) for n in range(1, args.rounds + 1)]
    print(f"bentos: {tags[0]} -> {tags[1]}; load {args.rate:g} req/s, {args.concurrency} connections, "
          f"{os.cpu_count()} CPUs")
    report(rounds)
    if args.json:
        args.json.write_text(json.dumps({"bentos": tags, "rate": args.rate, "concurrency": args.concurrency,
                                         "rounds": rounds}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
