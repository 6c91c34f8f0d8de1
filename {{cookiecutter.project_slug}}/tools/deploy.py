"""Blue-green deployment driven by git: bentos/deployment.yaml is the desired state, this applies it.

    python tools/deploy.py set [--bento TAG] [--commit]  # TAG (default: reports/package.json) -> idle
    python tools/deploy.py set --commit --manifests deploy/k8s  # the same, with the rendered manifests in the commit
    python tools/deploy.py set --image-digest sha256:... ...    # Kubernetes: pin the slot's image by its digest
    python tools/deploy.py apply                         # start, /readyz, smoke, then switch nginx
    python tools/deploy.py status [--json]               # both slots, bentos, model versions, live
    python tools/deploy.py rollback [--commit]           # live back to the other slot (a switch in grace)
    git revert <release commit> && python tools/deploy.py apply   # the GitOps rollback, from history
    python tools/deploy.py render-k8s -o deploy/k8s [--check]  # Deployments + Services for Argo CD / Flux
    python tools/deploy.py loadtest --requests 3000 --seconds 60 [--during "CMD"]
    python tools/deploy.py stop                          # stop the proxy and both slots

Exit status 2 with one clear line when a deployment cannot go ahead; traffic then stays where it was.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }}.deploy import k8s
from {{ cookiecutter.package_name }}.deploy.engine import LocalEngine
from {{ cookiecutter.package_name }}.deploy.state import (
    DeployError,
    load_state,
    other,
    update_state_file,
    with_bento,
)
from {{ cookiecutter.package_name }}.stage import quiet_environment

ROOT = Path(__file__).resolve().parents[1]
quiet_environment()


def packaged_bento(report: Path) -> str:
    """The bento the last `dvc repro package` built, if its gate passed."""
    if not report.is_file():
        raise DeployError(f"no --bento given and {report} not found: run `dvc repro package` or pass --bento TAG")
    package = json.loads(report.read_text(encoding="utf-8"))
    if not package.get("gate_passed", False):
        raise DeployError(f"{report}: the gate did not pass for {package.get('bento_tag')}; it is not deployable")
    return str(package["bento_tag"])


def git_commit(paths: list[Path], message: str) -> None:
    """Commit these paths alone (the state file, and the manifests rendered from it): one release, one commit."""
    names = [str(path.resolve()) for path in paths]
    where = ["git", "-C", str(paths[0].resolve().parent)]
    subprocess.run([*where, "add", "--all", "--", *names], check=True, capture_output=True)
    done = subprocess.run([*where, "commit", "-q", "-m", message, "--", *names], capture_output=True, text=True)
    if done.returncode != 0:
        raise DeployError(f"git commit failed: {(done.stderr or done.stdout).strip()}")
    print(f"committed: {message}")


def validated(manifests: dict[str, dict[str, Any]], k8s_version: str) -> None:
    problems = k8s.validate_manifests(manifests, k8s_version)
    if problems:
        raise DeployError("rendered manifests fail the Kubernetes schemas:\n  " + "\n  ".join(problems))


def changed_paths(args: argparse.Namespace) -> list[Path]:
    """The state file, plus (--manifests DIR) the manifests rendered from it and checked against the schemas."""
    if args.manifests is None:
        return [args.state]
    manifests = k8s.render_manifests(load_state(args.state))
    validated(manifests, k8s.DEFAULT_K8S_VERSION)
    for path in k8s.write_manifests(manifests, args.manifests):
        print(f"wrote {path}")
    return [args.state, args.manifests]


def cmd_set(args: argparse.Namespace) -> int:
    state = load_state(args.state)
    tag = args.bento or packaged_bento(args.package_report)
    if args.verify:
        from {{ cookiecutter.package_name }}.deploy.checks import bento_info

        tag = bento_info(tag).tag  # an unknown tag fails here, before the file changes
    slot, live = with_bento(state, tag, promote=not args.no_promote)
    update_state_file(args.state, live=live, bentos={slot: tag}, image_digests={slot: args.image_digest})
    pinned = f" (image {args.image_digest})" if args.image_digest else ""
    print(f"{args.state}: slots.{slot}.bento = {tag}{pinned}; live = {live}")
    paths = changed_paths(args)
    if args.commit:
        git_commit(paths, f"deploy: {tag} -> {slot}" + (f" (live: {live})" if live == slot else " (preview)"))
    else:
        print("next: commit it (git commit -am 'deploy ...'), then `python tools/deploy.py apply`")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    state = load_state(args.state)
    report = LocalEngine(args.state).apply(state)
    for line in report.lines():
        if line:
            print(line)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    state = load_state(args.state)
    if state.live is None:
        raise DeployError("nothing is live: there is nothing to roll back")
    back = other(state.live)
    tag = state.slots[back].bento
    if tag is None:
        raise DeployError(f"slots.{back}.bento is empty: there is no previous release to roll back to")
    update_state_file(args.state, live=back, bentos={})
    print(f"{args.state}: live = {back} ({tag})")
    paths = changed_paths(args)
    if args.commit:
        git_commit(paths, f"rollback: live {state.live} -> {back} ({tag})")
    if args.no_apply:
        return 0
    return cmd_apply(args)


def cmd_status(args: argparse.Namespace) -> int:
    state = load_state(args.state)
    report = LocalEngine(args.state).status(state)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    proxy = report["proxy"]
    print(f"desired live: {report['desired_live']}   in sync: {report['in_sync']}")
    print(f"proxy: {proxy['url']} -> {proxy['live']} (pid {proxy['pid']})" if proxy else "proxy: not running")
    for name, slot in report["slots"].items():
        role = "LIVE" if slot["live"] else "idle"
        if not slot["live"] and slot.get("retire_in_s") is not None:
            role = f"retiring in {slot['retire_in_s']}s"
        running = (
            (f"running {slot['running_bento']} on :{slot['port']} pid {slot['pid']} ready={slot['ready']}")
            if slot["running"]
            else "not running"
        )
        print(f"  {name:<5} {role:<16} want={slot['desired_bento']} model={slot['model_version']} | {running}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    manifests = k8s.render_manifests(load_state(args.state))
    if args.validate:
        validated(manifests, args.k8s_version)
        print(f"{len(manifests)} manifests valid against Kubernetes {args.k8s_version} schemas")
    if args.check:
        found = k8s.drift(manifests, args.output)
        if found:
            raise DeployError("committed manifests are out of date (run render-k8s):\n  " + "\n  ".join(found))
        print(f"{args.output} matches bentos/deployment.yaml")
        return 0
    for path in k8s.write_manifests(manifests, args.output):
        print(f"wrote {path}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    stopped = LocalEngine(args.state).stop()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from loadgen import LoadRun, summarize

    from {{ cookiecutter.package_name }}.deploy.checks import bento_info, load_smoke_requests
    from {{ cookiecutter.package_name }}.deploy.runtime import Runtime

    runtime = Runtime.load(LocalEngine(args.state).state_dir)
    if runtime.proxy is None:
        raise DeployError("the proxy is not running: `deploy.py apply` first")
    _, requests = load_smoke_requests(bento_info(runtime.proxy.bento))
    url = f"http://127.0.0.1:{runtime.proxy.port}{requests[0]['path']}"
    run = LoadRun(
        url,
        requests[0]["body"],
        requests=args.requests,
        max_seconds=args.seconds,
        concurrency=args.concurrency,
        rate=args.rate,
    ).start()
    window = None
    if args.during:
        time.sleep(1.0)
        begin = time.monotonic()
        done = subprocess.run(shlex.split(args.during), cwd=ROOT)
        window = (begin, time.monotonic())
        time.sleep(1.0)
        samples = run.stop()
        if done.returncode != 0:
            print(f"the command under load exited {done.returncode}", file=sys.stderr)
    else:
        samples = run.join()
    after = Runtime.load(LocalEngine(args.state).state_dir)
    figures = summarize(samples, window, after.proxy.live if (after.proxy and window) else None)
    print(json.dumps(figures, indent=2))
    return 1 if figures["failed"] else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--state", type=Path, default=ROOT / "bentos" / "deployment.yaml", help="the state file")
    top.add_argument("-v", "--verbose", action="store_true")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("set", help="put a bento in the idle slot and mark it live (edits the state file)")
    p.add_argument("--bento", help="bento tag (default: bento_tag from reports/package.json)")
    p.add_argument("--package-report", type=Path, default=ROOT / "reports" / "package.json")
    p.add_argument("--no-promote", action="store_true", help="fill the idle slot but keep live where it is")
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="do not require the bento in the local store (CI that only renders manifests)",
    )
    p.add_argument(
        "--image-digest",
        help="sha256:... of the pushed image (Kubernetes): the manifests then run <image>:<version>@<digest>",
    )
    p.add_argument("--commit", action="store_true", help="git commit the state file")
    p.add_argument("--manifests", type=Path, help="also render (and validate) the Kubernetes manifests into DIR")
    p.set_defaults(func=cmd_set)

    p = sub.add_parser("apply", help="make this machine match the state file")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("rollback", help="make the other slot live again (edits the state file, then applies)")
    p.add_argument("--commit", action="store_true", help="git commit the state file")
    p.add_argument("--manifests", type=Path, help="also render (and validate) the Kubernetes manifests into DIR")
    p.add_argument("--no-apply", action="store_true", help="only edit the state file")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("status", help="both slots, their bentos and model versions, and which is live")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("render-k8s", help="write Kubernetes manifests for the state")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--check", action="store_true", help="fail if the folder differs from a fresh render")
    p.add_argument("--validate", action="store_true", help="validate against Kubernetes schemas (offline)")
    p.add_argument("--k8s-version", default=k8s.DEFAULT_K8S_VERSION)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("stop", help="stop the proxy and both slots")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("loadtest", help="bounded loopback load through the proxy (optionally during a command)")
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rate", type=float, default=200.0, help="requests per second (0: as fast as possible)")
    p.add_argument("--during", help="a command to run under load, e.g. 'python tools/deploy.py apply'")
    p.set_defaults(func=cmd_loadtest)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="[deploy] %(message)s")
    try:
        return int(args.func(args))
    except DeployError as error:
        print(f"[deploy] ERROR: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
