"""Shadow traffic's parts: pairing nginx's logs, sampling, comparing answers, and the verdict.

The mirroring nginx config is tested with the others in test_deploy_state.py; the whole path (real
bentos behind nginx, mirrored live traffic, a refused switch) in test_deploy_live.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.deploy.shadow import (
    ShadowReport,
    compare_rows,
    judge,
    mirrored_predictions,
    read_log,
    rows_of,
    spread,
)
from {{ cookiecutter.package_name }}.deploy.state import Shadow, parse_state


def request(rid: str, status: str = "200", uri: str = "/predict", method: str = "POST") -> dict[str, str]:
    return {"id": rid, "method": method, "uri": uri, "status": status, "body": '{"transactions": []}'}


def test_mirrored_requests_pair_by_request_id_and_count_the_new_slots_failures() -> None:
    requests = [
        request("a"),
        request("b"),
        request("c", status="422"),  # refused by the live slot: bad input says nothing about the new model
        request("d", uri="/readyz", method="GET"),
        request("e", uri="/predict_batched"),
        request("f"),  # never mirrored (nginx logged no copy): left out
    ]
    mirrored = [
        {"id": "a", "status": "200"},
        {"id": "b", "status": "502"},
        {"id": "c", "status": "422"},
        {"id": "d", "status": "200"},
        {"id": "e", "status": "502, 200"},  # retried: the last answer counts
    ]
    answered, failed = mirrored_predictions(requests, mirrored)
    assert [entry["id"] for entry in answered] == ["a", "b", "e"]
    assert failed == 1


def test_a_log_line_cut_short_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "shadow-requests.log"
    log.write_text(json.dumps(request("a")) + "\n" + '{"id": "b", "sta')
    assert [entry["id"] for entry in read_log(log)] == ["a"]
    assert read_log(tmp_path / "missing.log") == []


def test_the_sample_spans_the_whole_window() -> None:
    assert spread(list(range(10)), 20) == list(range(10))
    assert spread(list(range(100)), 4) == [0, 25, 50, 75]


def test_rows_compare_by_decision_and_score_whatever_the_dataset_names_them() -> None:
    live = {"predictions": [{"id": "a", "p": 0.9, "flag": True}, {"id": "b", "p": 0.1, "flag": False}]}
    new = [{"row": "a", "risk": 0.8, "hit": True}, {"row": "b", "risk": 0.6, "hit": True}]  # another model's names
    compared = compare_rows(rows_of(live), rows_of(new))
    assert [same for same, _ in compared] == [True, False]
    assert [round(diff, 6) for _, diff in compared] == [0.1, 0.5]
    with pytest.raises(ValueError, match="1 rows from the live slot, 2"):
        compare_rows(rows_of(live)[:1], new)
    with pytest.raises(ValueError):
        rows_of({"detail": "not predictions"})
    with pytest.raises(ValueError, match="one score and one decision"):
        compare_rows([{"id": "a", "p": 0.9}], [{"id": "a", "p": 0.9}])


SETTINGS = Shadow(enabled=True, min_requests=10, min_agreement=0.9, max_mean_score_diff=0.05, max_error_rate=0.1)


def agreeing(count: int, diff: float = 0.01) -> list[tuple[bool, float]]:
    return [(True, diff)] * count


@pytest.mark.parametrize(
    ("mirrored", "failed", "rows", "problem"),
    [
        (50, 0, agreeing(50), None),
        (5, 0, agreeing(5), "only 5 prediction requests were mirrored (min_requests 10)"),
        (50, 10, agreeing(40), "failed 10 of 50 mirrored requests"),
        (50, 0, agreeing(40) + [(False, 0.01)] * 10, "decisions agree on 0.800 of rows (min_agreement 0.9)"),
        (50, 0, agreeing(50, diff=0.2), "mean score difference 0.2000"),
        (50, 0, [], "no answers could be compared"),
    ],
)
def test_the_verdict_names_every_limit_broken(
    mirrored: int, failed: int, rows: list[tuple[bool, float]], problem: str | None
) -> None:
    report = judge(SETTINGS, 30.0, mirrored, failed, len(rows), 0, rows)
    assert isinstance(report, ShadowReport)
    if problem is None:
        assert report.passed and report.agreement == 1.0, report.problems
        summary = "50 requests mirrored in 30 s, 0 failed; 50 re-sent to both slots, 0 failed; 50 rows compared"
        assert summary in report.summary()
    else:
        assert not report.passed
        assert any(problem in line for line in report.problems), report.problems


def test_failures_of_re_sent_requests_count_against_their_own_total() -> None:
    report = judge(SETTINGS, 30.0, 50, 0, 20, 3, agreeing(17))
    assert report.problems == [
        "the new slot failed 3 of 20 re-sent requests the live slot answered (max_error_rate 0.1)"
    ]


def test_shadow_settings_are_checked_with_the_state_file() -> None:
    state = {"live": None, "slots": {"blue": {"port": 3001}, "green": {"port": 3002}}}
    assert parse_state(state).checks.shadow.enabled is False  # off unless asked for
    with pytest.raises(Exception, match=r"checks\.shadow\.min_agreement"):
        parse_state({**state, "checks": {"shadow": {"enabled": True, "min_agreement": 1.5}}})
    with pytest.raises(Exception, match=r"checks\.shadow\.window"):
        parse_state({**state, "checks": {"shadow": {"window": 30}}})
