"""A bounded load generator for rollout tests: loopback only, a fixed request count and a time limit.

It sends the same request over keep-alive connections from a few concurrent workers, at a fixed
rate, and records for every request when it started and ended, its status, and which slot answered
(nginx's X-Deploy-Slot header). `summarize` turns that into the rollout figures: failed requests,
latency during the switch, and the time until all traffic was on the new slot.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from {{ cookiecutter.package_name }}.deploy.proxy import SLOT_HEADER

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Sample:
    """One request: monotonic start/end, HTTP status (0: no response), the slot that answered, the error."""

    start: float
    end: float
    status: int
    slot: str | None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status != 200 or self.error is not None


def require_loopback(url: str) -> None:
    """This tool only ever loads this machine."""
    host = urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")


class LoadRun:
    """Load in a background thread, so a deploy command can run meanwhile. Always ends on its own."""

    def __init__(
        self,
        url: str,
        body: Any,
        *,
        requests: int,
        max_seconds: float,
        concurrency: int = 8,
        rate: float | None = 200.0,
        timeout_s: float = 30.0,
    ) -> None:
        require_loopback(url)
        if requests < 1 or max_seconds <= 0 or concurrency < 1:
            raise ValueError("requests, max_seconds and concurrency must be positive")
        self.url, self.body = url, body
        self.requests, self.max_seconds, self.concurrency = requests, max_seconds, concurrency
        self.rate, self.timeout_s = rate, timeout_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> LoadRun:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        """Ask it to finish now (it also stops at its count or time limit), wait, return the samples."""
        self._stop.set()
        return self.join()

    def join(self) -> list[Sample]:
        self._thread.join(self.max_seconds + self.timeout_s + 5)
        return list(self.samples)

    async def _main(self) -> None:
        began = time.monotonic()
        deadline = began + self.max_seconds
        issued = 0
        interval = 1.0 / self.rate if self.rate else 0.0
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal issued
            while not self._stop.is_set() and issued < self.requests:
                slot_time = began + issued * interval
                issued += 1
                now = time.monotonic()
                if slot_time > now:
                    await asyncio.sleep(slot_time - now)
                if time.monotonic() >= deadline:
                    return
                self.samples.append(await self._one(client))

        async with httpx.AsyncClient(limits=limits, timeout=self.timeout_s) as client:
            await asyncio.gather(*(worker(client) for _ in range(self.concurrency)))

    async def _one(self, client: httpx.AsyncClient) -> Sample:
        start = time.monotonic()
        try:
            response = await client.post(self.url, json=self.body)
            return Sample(
                start,
                time.monotonic(),
                response.status_code,
                response.headers.get(SLOT_HEADER),
                None if response.status_code == 200 else response.text[:200],
            )
        except httpx.HTTPError as error:
            return Sample(start, time.monotonic(), 0, None, f"{type(error).__name__}: {error}")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summarize(
    samples: list[Sample], window: tuple[float, float] | None = None, new_slot: str | None = None
) -> dict[str, Any]:
    """The rollout figures. `window` is (command start, command end) in time.monotonic()."""

    def ms(values: list[float], q: float) -> float | None:
        found = percentile(values, q)
        return None if found is None else round(found * 1000, 2)

    latencies = [s.end - s.start for s in samples if not s.failed]
    by_slot: dict[str, int] = {}
    for sample in samples:
        by_slot[sample.slot or "none"] = by_slot.get(sample.slot or "none", 0) + 1
    failures = [s for s in samples if s.failed]
    report: dict[str, Any] = {
        "requests": len(samples),
        "failed": len(failures),
        "failure_examples": sorted({f"{s.status} {s.error}" for s in failures})[:5],
        "by_slot": by_slot,
        "p50_ms": ms(latencies, 50),
        "p99_ms": ms(latencies, 99),
        "max_ms": round(max(latencies) * 1000, 2) if latencies else None,
    }
    if samples:
        span = max(s.end for s in samples) - min(s.start for s in samples)
        report["throughput_rps"] = round(len(samples) / span, 1) if span > 0 else None
    if window is not None:
        begin, end = window
        during = [s.end - s.start for s in samples if not s.failed and s.end >= begin and s.start <= end]
        report.update(
            window_s=round(end - begin, 3),
            window_requests=len(during),
            window_p50_ms=ms(during, 50),
            window_p99_ms=ms(during, 99),
            window_max_ms=round(max(during) * 1000, 2) if during else None,
            window_failed=sum(1 for s in failures if s.end >= begin and s.start <= end),
        )
        if new_slot is not None:
            old_ends = [
                s.end for s in samples if not s.failed and s.slot != new_slot and s.end >= begin and s.start <= end
            ]
            new_starts = [s.end for s in samples if s.slot == new_slot and s.end >= begin]
            report["first_on_new_s"] = round(min(new_starts) - begin, 3) if new_starts else None
            report["all_on_new_s"] = round(max([*old_ends, min(new_starts)]) - begin, 3) if new_starts else None
    return report
