"""Shadow traffic: a new slot answers live requests before it takes any, and is judged against the live one.

For `checks.shadow.window_s`, nginx mirrors every request to the new slot (its answers are dropped, the
client only ever sees the live slot's). nginx logs each request with its body and each mirrored copy
with the new slot's status, paired by `$request_id`. Then a sample of the mirrored prediction requests
(at most `max_compared`, spread over the window) is sent to both slots directly and the answers are
compared row by row: the decision (each model at its own threshold) and the score. The new
slot is switched to only with enough traffic, few failures, and answers within the limits.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..serving import SHADOW_HEADER
from .proxy import SHADOW_MIRROR_LOG, SHADOW_REQUESTS_LOG, Nginx, SwitchTiming
from .runtime import LOOPBACK, ProxyRuntime
from .state import DeployError, Shadow

PREDICTION_PATHS = ("/predict", "/predict_batched")
PROGRESS_EVERY_S = 10.0


@dataclass
class ShadowReport:
    """What the shadow window showed, and what (if anything) stops the switch."""

    window_s: float  # from mirroring confirmed on to confirmed off
    mirrored: int  # prediction requests the live slot answered, mirrored to the new slot
    failed: int  # of those, the new slot answered with an error status or not at all
    compared_requests: int  # re-sent to both slots
    replay_failed: int  # of those, the new slot answered with an error, not at all, or off the contract
    compared_rows: int
    agreement: float | None  # share of rows with the same decision
    mean_score_diff: float | None
    max_score_diff: float | None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        figures = f"{self.mirrored} requests mirrored in {self.window_s:.0f} s, {self.failed} failed"
        if self.compared_requests:
            figures += f"; {self.compared_requests} re-sent to both slots, {self.replay_failed} failed"
        if self.compared_rows:
            figures += (
                f"; {self.compared_rows} rows compared: decisions agree "
                f"{self.agreement:.3f}, score difference mean {self.mean_score_diff:.4f} max {self.max_score_diff:.4f}"
            )
        return figures

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_log(path: Path) -> list[dict[str, str]]:
    """nginx's JSON lines; a line cut short (nginx killed mid-write) is skipped, not fatal."""
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def _is_prediction(entry: dict[str, str]) -> bool:
    return entry.get("method", "POST") == "POST" and entry.get("uri", "").split("?")[0] in PREDICTION_PATHS


def mirrored_predictions(
    requests: list[dict[str, str]], mirrored: list[dict[str, str]]
) -> tuple[list[dict[str, str]], int]:
    """(prediction requests the live slot answered 2xx and nginx mirrored, how many the new slot failed).

    A request the live slot refused (bad input) says nothing about the new model and is left out.
    """
    mirror_status = {entry["id"]: entry.get("status", "") for entry in mirrored if "id" in entry}
    answered = [
        entry
        for entry in requests
        if _is_prediction(entry) and entry.get("status", "").startswith("2") and entry.get("id") in mirror_status
    ]
    # $upstream_status is "-" when nginx got no answer, or "502, 200" after a retry: the last one counts.
    failed = sum(1 for entry in answered if not mirror_status[entry["id"]].split(",")[-1].strip().startswith("2"))
    return answered, failed


def spread(items: list[Any], count: int) -> list[Any]:
    """At most `count` items, evenly spaced over the list (the whole window, not its first seconds)."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(index * step)] for index in range(count)]


def rows_of(answer: Any) -> list[dict[str, Any]]:
    """The per-row predictions of a /predict answer ({"predictions": [...]}) or a /predict_batched one ([...])."""
    rows = answer.get("predictions") if isinstance(answer, dict) else answer
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError("not a list of predictions")
    return rows


def compare_rows(live: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[tuple[bool, float]]:
    """Per row: (same decision, |score difference|). Rows pair up by position (one request, same order)."""
    if len(live) != len(new):
        raise ValueError(f"{len(live)} rows from the live slot, {len(new)} from the new one")
    pairs = [(score_and_decision(a), score_and_decision(b)) for a, b in zip(live, new, strict=True)]
    return [(old_decision == new_decision, abs(old - new)) for (old, old_decision), (new, new_decision) in pairs]


def score_and_decision(row: dict[str, Any]) -> tuple[float, bool]:
    """A prediction's score (its one number) and decision (its one boolean), whatever the dataset names them.

    The names are the dataset's (conf/dataset `response`) and may differ between the two slots' models, the
    shapes may not: a prediction is the row's id, one probability and one decision.
    """
    decisions = [value for value in row.values() if isinstance(value, bool)]
    scores = [value for value in row.values() if isinstance(value, float)]
    if len(decisions) != 1 or len(scores) != 1:
        raise ValueError(f"a prediction holds one score and one decision, not {sorted(row)}")
    return scores[0], decisions[0]


def replay(
    requests: list[dict[str, str]], live_port: int, new_port: int, timeout_s: float, budget_s: float
) -> tuple[list[tuple[bool, float]], int, int]:
    """Send each captured request to both slots, for at most `budget_s` (the deploy lock is held).

    Returns (compared rows, requests sent to both, requests the new slot failed). A request the live
    slot does not answer well now (a burst, a restart) has nothing to be compared with and is skipped.
    """
    rows: list[tuple[bool, float]] = []
    sent = failed = 0
    headers = {"content-type": "application/json", SHADOW_HEADER: "1"}  # copies: not prediction-logged
    deadline = time.monotonic() + budget_s
    with httpx.Client(timeout=timeout_s) as client:
        for entry in requests:
            if time.monotonic() > deadline:
                break
            body, uri = entry.get("body", "").encode(), entry["uri"]
            try:
                live = client.post(f"http://{LOOPBACK}:{live_port}{uri}", content=body, headers=headers)
                live_rows = rows_of(live.json()) if live.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                live_rows = None
            if live_rows is None:
                continue
            sent += 1
            try:
                new = client.post(f"http://{LOOPBACK}:{new_port}{uri}", content=body, headers=headers)
                if new.status_code != 200:
                    failed += 1
                    continue
                rows += compare_rows(live_rows, rows_of(new.json()))
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                failed += 1  # no answer, or one that is not the service's contract
    return rows, sent, failed


def judge(
    settings: Shadow,
    window_s: float,
    mirrored: int,
    failed: int,
    compared: int,
    replay_failed: int,
    rows: list[tuple[bool, float]],
) -> ShadowReport:
    """The figures, and every limit they break."""
    diffs = [diff for _, diff in rows]
    report = ShadowReport(
        window_s=window_s,
        mirrored=mirrored,
        failed=failed,
        compared_requests=compared,
        replay_failed=replay_failed,
        compared_rows=len(rows),
        agreement=sum(same for same, _ in rows) / len(rows) if rows else None,
        mean_score_diff=sum(diffs) / len(diffs) if diffs else None,
        max_score_diff=max(diffs) if diffs else None,
    )
    if mirrored < settings.min_requests:
        report.problems.append(
            f"only {mirrored} prediction requests were mirrored (min_requests {settings.min_requests}): too little "
            "live traffic to judge; lengthen window_s or send traffic"
        )
    for what, bad, total in (("mirrored", failed, mirrored), ("re-sent", replay_failed, compared)):
        if total and bad / total > settings.max_error_rate:
            report.problems.append(
                f"the new slot failed {bad} of {total} {what} requests the live slot answered "
                f"(max_error_rate {settings.max_error_rate:g})"
            )
    if mirrored >= settings.min_requests and not rows:
        report.problems.append("no answers could be compared")
    if report.agreement is not None and report.agreement < settings.min_agreement:
        report.problems.append(
            f"decisions agree on {report.agreement:.3f} of rows (min_agreement {settings.min_agreement:g})"
        )
    if report.mean_score_diff is not None and report.mean_score_diff > settings.max_mean_score_diff:
        report.problems.append(
            f"mean score difference {report.mean_score_diff:.4f} (max_mean_score_diff {settings.max_mean_score_diff:g})"
        )
    return report


def run_shadow(
    nginx: Nginx,
    proxy: ProxyRuntime,
    live_port: int,
    new_port: int,
    settings: Shadow,
    drain_timeout_s: float,
    request_timeout_s: float,
) -> ShadowReport:
    """Mirror live traffic to `new_port` for the window, stop mirroring, compare; logs are deleted after."""
    logs = [nginx.prefix / SHADOW_REQUESTS_LOG, nginx.prefix / SHADOW_MIRROR_LOG]
    for path in logs:
        path.unlink(missing_ok=True)
    try:
        started = time.monotonic()
        on = nginx.switch(proxy, proxy.live, live_port, proxy.bento, drain_timeout_s, shadow_port=new_port)
        mirroring_since = started + on.confirmed_s
        try:
            _wait(settings.window_s, logs[1])
        finally:
            stopping = time.monotonic()
            off = _stop_mirroring(nginx, proxy, live_port, new_port, drain_timeout_s)
        # A mirrored request still held by a worker that outlived the drain has only half its log
        # lines; pairing by request id leaves it out.
        window_s = stopping + off.confirmed_s - mirroring_since
        answered, failed = mirrored_predictions(read_log(logs[0]), read_log(logs[1]))
        sample = spread(answered, settings.max_compared)
        rows, sent, replay_failed = replay(sample, live_port, new_port, request_timeout_s, max(30.0, window_s))
        return judge(settings, window_s, len(answered), failed, sent, replay_failed, rows)
    finally:
        for path in logs:  # they hold request bodies: customer data does not stay on disk
            path.unlink(missing_ok=True)


def _stop_mirroring(
    nginx: Nginx, proxy: ProxyRuntime, live_port: int, new_port: int, drain_timeout_s: float
) -> SwitchTiming:
    """Back to the plain config. If nginx refuses, it keeps mirroring (switch() restored the mirroring
    config): say so loudly, since request bodies are still logged."""
    try:
        return nginx.switch(proxy, proxy.live, live_port, proxy.bento, drain_timeout_s)
    except DeployError as error:
        raise DeployError(
            f"could not turn shadow mirroring off ({error}); nginx still mirrors to port {new_port} and logs "
            f"request bodies under {nginx.prefix}: run `python tools/deploy.py apply` again or `deploy.py stop`"
        ) from None


def _wait(window_s: float, mirror_log: Path) -> None:
    """Sleep through the window, saying every few seconds how many requests were mirrored so far."""
    end = time.monotonic() + window_s
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(PROGRESS_EVERY_S, left))
        count = _line_count(mirror_log)
        print(
            f"shadow: {count} requests mirrored, {max(0.0, end - time.monotonic()):.0f} s left",
            file=sys.stderr,
            flush=True,
        )


def _line_count(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0
