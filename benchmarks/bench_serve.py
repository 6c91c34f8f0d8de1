"""Serving side by side, in one run: a plain Starlette app vs the bento's /predict and /predict_batched.

Run inside (or point at) a baked project whose pipeline reached `package`, with the BENTOML_HOME that
holds its bento:

    python benchmarks/bench_serve.py --project /tmp/bake/fraud-detection
    python benchmarks/bench_serve.py --project P --requests 3000 --runs 3 --rss-requests 50000

(a) `plain`: Starlette on uvicorn (1 worker) calling the project's own exported scoring code
    (`serving.request_model(...).model_validate_json` then `serving.predict_rows`) inline, on the same body;
(b) the bento's POST /predict; (c) the bento's POST /predict_batched; optionally (d) `--mounted`: a bento
    that mounts the plain app as an ASGI app, to show what BentoML's own request path costs; and (e)
    `--also-bento TAG`: another bento's POST /predict, e.g. the same model packaged with
    `serve.prediction_log.enabled=false`, to measure what the prediction log costs.
Load comes from wrk (1 thread, --connections, loopback): a warm-up, then --runs bounded runs of --requests
each; the figures are the medians over the runs. Start to ready is from process start to the first 200 on
/readyz. RSS (the server's whole process tree) is read before and after --rss-requests more requests.
Servers start in a scratch folder, so the bento's prediction log (on, as in production) takes the benchmark's
repeated row there and the project's logs/, which tools/monitor.py reads for drift, stays as it was.
Exits non-zero when a server does not come up or answers anything but 200 with the same predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_project_argument, child_env, import_package, machine_line, resolve_project, table  # noqa: E402

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("{body}", "rb"):read("*a")
local limit, count = {limit}, 0
function response(status, headers, body)
  count = count + 1
  if count >= limit then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d}}\\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(url: str, body: Path, seconds: float, connections: int, workdir: Path, limit: int = 0) -> dict[str, float]:
    """One wrk run of `seconds` (wrk always runs its full duration); with `limit`, it stops sending after
    that many answers (the memory run), so its rate is not meaningful."""
    script = workdir / f"post_{limit}.lua"
    script.write_text(WRK_SCRIPT.format(body=body, limit=limit or 2**62), encoding="utf-8")
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    figures = json.loads(next(line[4:] for line in output.splitlines() if line.startswith("WRK ")))
    figures["req/s"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants (a bento is a supervisor plus workers)."""
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def post(url: str, body: bytes) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, json.loads(answer.read())


def wait_ready(base: str, process: subprocess.Popen[bytes], started: float, limit: float = 120) -> float:
    """Seconds from `started` until /readyz answers 200; fails if the process dies first."""
    while time.perf_counter() - started < limit:
        if process.poll() is not None:
            raise SystemExit(f"server for {base} exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{base} not ready after {limit} s")


@contextmanager
def server(command: list[str], cwd: Path, env: dict[str, str], port: int, log: Path) -> Iterator[dict[str, Any]]:
    """A server process on 127.0.0.1:port, ready; yields its base url, pid and start-to-ready seconds."""
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen(  # PWD as a shell in cwd sets it: a relative prediction log dir lands in cwd
            command, cwd=cwd, env={**env, "PWD": str(cwd)}, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(base, process, started)
        yield {"base": base, "pid": process.pid, "ready_s": ready}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def measure(url: str, body: Path, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """A warm-up sizes the runs: each then lasts about `requests` answers; medians over `runs`."""
    warm = wrk(url, body, args.warmup_s, args.connections, workdir)
    seconds = args.requests / max(warm["req/s"], 1.0)
    runs = [wrk(url, body, seconds, args.connections, workdir) for _ in range(args.runs)]
    return {
        "req/s": statistics.median(r["req/s"] for r in runs),
        "p50 ms": statistics.median(r["p50_us"] for r in runs) / 1000,
        "p99 ms": statistics.median(r["p99_us"] for r in runs) / 1000,
        "requests": statistics.median(r["requests"] for r in runs),
        "failed": sum(r["non2xx"] + r["socket_errors"] for r in runs),
        "rate": warm["req/s"],
    }


def rss_growth(pid: int, url: str, body: Path, args: argparse.Namespace, rate: float, workdir: Path) -> list[float]:
    """RSS before and after `rss_requests` more answers (the run stops sending once it has them)."""
    before = tree_rss_mib(pid)
    run = wrk(url, body, 1.5 * args.rss_requests / max(rate, 1.0) + 5, args.connections, workdir, args.rss_requests)
    if run["requests"] < args.rss_requests or run["non2xx"] + run["socket_errors"]:
        raise SystemExit(f"memory run on {url}: {run}")
    return [before, tree_rss_mib(pid)]


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [int(sock.getsockname()[1]) for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def plain_app(project: Path, model_tag: str) -> Any:
    """(a): Starlette calling the project's exported request model and scoring function inline."""
    import importlib

    import torch
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    package = import_package(project)
    serving = importlib.import_module(f"{package.__name__}.serving.api")
    artifact = importlib.import_module(f"{package.__name__}.training.artifact")
    settings = json.loads((project / "bentos" / serving.SERVE_FILE).read_text(encoding="utf-8"))
    torch.set_num_threads(settings["torch_threads"])
    model = artifact.load_model(project / "models" / "model.pt")
    request_model = serving.request_model(settings["max_rows_per_request"])
    shape = serving.shape_of(settings["response"])

    async def predict(request: Request) -> Response:
        parsed = request_model.model_validate_json(await request.body())
        answer = serving.predict_rows(model, parsed.transactions, model_tag, shape)
        return Response(answer.model_dump_json(), media_type="application/json")

    async def ready(_: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)])


MOUNTED_SERVICE = """
import sys
from pathlib import Path

import bentoml

sys.path.insert(0, {benchmarks!r})
from bench_serve import plain_app

app = plain_app(Path({project!r}), {model_tag!r})


@bentoml.asgi_app(app, path="/plain")
@bentoml.service(name="mounted_plain", workers=1, logging={{"access": {{"enabled": False}}}})
class Mounted:
    pass
"""


def targets(
    project: Path, package: dict[str, Any], workdir: Path, mounted: bool, also_bento: str | None
) -> list[tuple[str, list[str]]]:
    """(label, command) per server; every command takes its port as the last argument."""
    me = str(Path(__file__).resolve())
    found = [
        ("plain", [sys.executable, me, "--project", str(project), "--serve-plain", "--port"]),
        ("bento", ["bentoml", "serve", package["bento_tag"], "--host", "127.0.0.1", "--port"]),
    ]
    if also_bento:
        found.append(("also", ["bentoml", "serve", also_bento, "--host", "127.0.0.1", "--port"]))
    if mounted:
        source = MOUNTED_SERVICE.format(
            benchmarks=str(Path(me).parent), project=str(project), model_tag=package["bento_model_tag"]
        )
        (workdir / "mounted_service.py").write_text(source, encoding="utf-8")
        found.append(
            (
                "mounted",
                [
                    "bentoml",
                    "serve",
                    "mounted_service:Mounted",
                    "--working-dir",
                    str(workdir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                ],
            )
        )
    return found


def routes(label: str, also_bento: str | None = None) -> list[tuple[str, str]]:
    if label == "also":
        return [(f"(e) {also_bento} /predict", "/predict")]
    if label == "bento":
        return [("(b) bento /predict", "/predict"), ("(c) bento /predict_batched", "/predict_batched")]
    if label == "mounted":
        return [("(d) bento mounting the plain app", "/plain/predict")]
    return [("(a) plain Starlette /predict", "/predict")]


def same_answers(first: Any, second: Any) -> bool:
    """/predict answers an object, /predict_batched the bare list of predictions."""
    as_list = [a["predictions"] if isinstance(a, dict) else a for a in (first, second)]
    return bool(as_list[0] == as_list[1])


def run_all(args: argparse.Namespace, project: Path, workdir: Path) -> int:
    package = json.loads((project / "reports" / "package.json").read_text(encoding="utf-8"))
    smoke = json.loads((project / "bentos" / "smoke_requests.json").read_text(encoding="utf-8"))["requests"][0]
    body_json = {"transactions": smoke["body"]["transactions"][: args.rows]}
    body = workdir / "body.json"
    body.write_text(json.dumps(body_json), encoding="utf-8")
    env = child_env(project)
    rows: list[list[object]] = []
    reference: Any = None
    throughput: dict[str, float] = {}
    for label, command in targets(project, package, workdir, args.mounted, args.also_bento):
        (port,) = free_ports(1)
        # Started in the scratch folder: the bento logs its benchmark traffic (one row, repeated) there, as it
        # would in the project, and the project's own prediction log, which the drift monitor reads, is left alone.
        with server([*command, str(port)], workdir, env, port, workdir / f"{label}.log") as live:
            for name, path in routes(label, args.also_bento):
                status, answer = post(live["base"] + path, body.read_bytes())
                reference = answer if reference is None else reference
                if status != 200 or not same_answers(answer, reference):
                    raise SystemExit(f"{name} answered {status} {answer!r}, not the reference {reference!r}")
                figures = measure(live["base"] + path, body, args, workdir)
                throughput[name] = figures["req/s"]
                before, after = (
                    rss_growth(live["pid"], live["base"] + path, body, args, figures["rate"], workdir)
                    if args.rss_requests and path == "/predict"
                    else (float("nan"), float("nan"))
                )
                rows.append(
                    [
                        name,
                        f"{figures['req/s']:.0f}",
                        f"{figures['p50 ms']:.1f}",
                        f"{figures['p99 ms']:.1f}",
                        f"{live['ready_s']:.1f}",
                        f"{before:.0f}",
                        f"{after:.0f}",
                        f"{after - before:+.1f}",
                        int(figures["failed"]),
                    ]
                )
    print(f"# {machine_line()}; load average {os.getloadavg()[0]:.1f} at the end")
    print(
        f"# wrk -t1 -c{args.connections}, {args.runs} runs of ~{args.requests} requests after {args.warmup_s:g} s "
        f"of warm-up (medians), {args.rows} row(s) per request; RSS across {args.rss_requests} more requests"
    )
    print(
        table(
            ["path", "req/s", "p50 ms", "p99 ms", "start->ready s", "RSS MiB before", "after", "growth", "failed"], rows
        )
    )
    plain = throughput["(a) plain Starlette /predict"]
    for name, value in throughput.items():
        if not name.startswith("(a)"):
            print(f"ratio {name} / (a): {value / plain:.2f}")
    if args.also_bento:
        also = throughput[f"(e) {args.also_bento} /predict"]
        print(f"ratio (e) / (b) bento /predict: {also / throughput['(b) bento /predict']:.2f}")
    return 1 if any(row[-1] for row in rows) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_project_argument(parser)
    parser.add_argument("--requests", type=int, default=3000, help="requests per measured run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup-s", type=float, default=3.0, help="warm-up seconds per path (sizes the runs)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rows", type=int, default=1, help="transactions per request")
    parser.add_argument("--rss-requests", type=int, default=50_000, help="0: skip the memory run")
    parser.add_argument("--mounted", action="store_true", help="add (d): a bento that mounts the plain app")
    parser.add_argument("--also-bento", metavar="TAG", help="add (e): this bento's /predict (e.g. prediction log off)")
    parser.add_argument("--serve-plain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as scratch:
        project = resolve_project(args.project, Path(scratch))
        if args.serve_plain:
            import uvicorn

            package = json.loads((project / "reports" / "package.json").read_text(encoding="utf-8"))
            app = plain_app(project, package["bento_model_tag"])
            uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, log_level="warning", access_log=False)
            return 0
        if not (project / "reports" / "package.json").exists():
            raise SystemExit(f"{project}: run the pipeline through `package` first (dvc repro)")
        return run_all(args, project, Path(scratch))


if __name__ == "__main__":
    sys.exit(main())
