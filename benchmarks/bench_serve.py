"""Serving cost of the example model: raw model call, in-process service call, HTTP with and without batching.

Run inside a baked project whose pipeline reached `package` (the bento must be in BENTOML_HOME):

    python benchmarks/bench_serve.py --project /tmp/gitops-ml-demo/fraud-detection
    python benchmarks/bench_serve.py --project P --requests 3000 --concurrency 16

The HTTP load generator sends a fixed number of requests to 127.0.0.1 only, with a time limit,
and stops by itself. Prints a table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def time_calls(call: Any, repeats: int) -> dict[str, float]:
    call()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return {"calls/s": 1000 / statistics.mean(times), "p50 ms": percentile(times, 0.5), "p99 ms": percentile(times, 0.99)}


async def load(url: str, body: dict[str, Any], requests: int, concurrency: int, time_limit: float) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    deadline = time.monotonic() + time_limit

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty() and time.monotonic() < deadline:
            queue.get_nowait()
            started = time.perf_counter()
            try:
                response = await client.post(url, json=body, timeout=30)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            failures += not ok

    started = time.perf_counter()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"req/s": len(latencies) / elapsed, "p50 ms": percentile(latencies, 0.5),
            "p99 ms": percentile(latencies, 0.99), "sent": len(latencies), "failed": failures}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True, help="a baked project after `dvc repro`")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per HTTP run at most")
    parser.add_argument("--repeats", type=int, default=300, help="in-process calls to time")
    args = parser.parse_args()
    project = args.project.resolve()
    os.chdir(project)
    sys.path.insert(0, str(project / "src"))
    package = json.loads((project / "reports" / "package.json").read_text())
    smoke = json.loads((project / "bentos" / "smoke_requests.json").read_text())["requests"][0]
    one_row = {"transactions": smoke["body"]["transactions"][:1]}

    import importlib

    names = [p.name for p in (project / "src").iterdir() if (p / "__init__.py").exists()]
    library = importlib.import_module(names[0])
    artifact = importlib.import_module(f"{library.__name__}.artifact")
    serving = importlib.import_module(f"{library.__name__}.serving")
    model = artifact.load_model(project / "models" / "model.pt")
    frame = serving.to_frame(serving.request_model(1)(**one_row).transactions)
    rows: dict[str, dict[str, float]] = {}
    rows["raw model call (1 row)"] = time_calls(lambda: model.predict_proba(frame), args.repeats)
    rows["validate + predict in process (1 row)"] = time_calls(
        lambda: serving.predict_rows(model, serving.to_frame(serving.request_model(1)(**one_row).transactions), "x"),
        args.repeats)

    port = free_port()
    server = subprocess.Popen(["bentoml", "serve", package["bento_tag"], "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, "PYTHONPATH": str(project / "src")})
    try:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        for label, route in (("HTTP /predict (no batching)", "predict"),
                             ("HTTP /predict_batched (adaptive batching)", "predict_batched")):
            asyncio.run(load(f"http://127.0.0.1:{port}/{route}", one_row, 100, 4, 30))  # warm-up
            rows[f"{label}, c={args.concurrency}"] = asyncio.run(
                load(f"http://127.0.0.1:{port}/{route}", one_row, args.requests, args.concurrency, args.time_limit))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    print(f"{'path':<52} {'rate/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
    for label, figures in rows.items():
        rate = figures.get("req/s", figures.get("calls/s", 0.0))
        print(f"{label:<52} {rate:>9.0f} {figures['p50 ms']:>8.2f} {figures['p99 ms']:>8.2f} "
              f"{int(figures.get('failed', 0)):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
