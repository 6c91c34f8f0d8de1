"""The retrain PR comment: one marker, the metrics against the base, the gate's every reason."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_pr_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pr_report", ROOT / "tools" / "pr_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pr_report"] = module
    spec.loader.exec_module(module)
    return module


pr_report = load_pr_report()

METRICS = {
    "overall": {"rows": 1000, "roc_auc": 0.91, "pr_auc": 0.42, "brier": 0.020, "recall": 0.6},
    "slices": {
        "cross_border": {"rows": 300, "roc_auc": 0.88, "pr_auc": 0.3},
        "small_fraud": {"rows": 200, "roc_auc": 0.8},
    },
    "latency": {"ms_per_row_batch": 0.01, "batch_rows": 4096},
}
BASE = {
    "overall": {"rows": 1000, "roc_auc": 0.89, "pr_auc": 0.45, "brier": 0.025, "recall": 0.6},
    "slices": {"cross_border": {"rows": 300, "roc_auc": 0.87, "pr_auc": 0.31}},
    "latency": {"ms_per_row_batch": 0.02, "batch_rows": 4096},
}
GATE_PASSED = {
    "passed": True,
    "champion": {"source": "git", "reference": "main@0123456789ab", "model_md5": "x"},
    "candidate": {"model_md5": "y"},
    "checks": [
        {
            "name": "threshold_roc_auc_min",
            "passed": True,
            "observed": 0.91,
            "limit": 0.8,
            "detail": "roc_auc >= 0.8",
        },
        {"name": "latency_ms_per_row", "passed": True, "observed": 0.01, "limit": 0.5, "detail": "a | b"},
    ],
}
GATE_FAILED = {
    **GATE_PASSED,
    "passed": False,
    "checks": [
        {
            "name": "no_regression_pr_auc",
            "passed": False,
            "observed": -0.03,
            "limit": -0.02,
            "detail": "pr_auc candidate - champion = -0.0300",
        },
    ],
}


def table_row(body: str, first_cell: str) -> str:
    rows = [line for line in body.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"expected one row for {first_cell!r} in:\n{body}"
    return rows[0]


def test_body_starts_with_the_marker_the_workflow_looks_for() -> None:
    body = pr_report.build_report(METRICS, BASE, GATE_PASSED)
    assert body.startswith(pr_report.MARKER + "\n")
    assert body.count(pr_report.MARKER) == 1


def test_metrics_table_shows_base_candidate_and_direction_aware_change() -> None:
    body = pr_report.build_report(METRICS, BASE, GATE_PASSED)
    assert table_row(body, "roc_auc") == "| roc_auc | 0.89 | 0.91 | +0.02 🟢 |"
    assert table_row(body, "pr_auc").endswith("-0.03 🔴 |")
    # Brier is better when lower: a drop is green.
    assert table_row(body, "brier").endswith("-0.005 🟢 |")
    assert table_row(body, "recall").endswith("±0 |")
    assert table_row(body, "rows") == "| rows | 1000 | 1000 | ±0 |"
    assert "ms_per_row_batch 0.01 (-0.01 🟢)" in body


def test_headline_metrics_come_first() -> None:
    body = pr_report.build_report(METRICS, BASE, GATE_PASSED)
    order = [
        line.split("|")[1].strip()
        for line in body.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip() in METRICS["overall"]
    ]
    assert order[:3] == ["roc_auc", "pr_auc", "brier"]


def test_without_base_metrics_every_value_is_new() -> None:
    body = pr_report.build_report(METRICS, None, GATE_PASSED, base_label="main")
    assert "| metric | main (no metrics) | this branch | change |" in body
    assert table_row(body, "roc_auc") == "| roc_auc | – | 0.91 | new |"


def test_slices_are_folded_with_changes() -> None:
    body = pr_report.build_report(METRICS, BASE, GATE_PASSED)
    assert "<details><summary>Per-slice metrics" in body
    assert table_row(body, "cross_border").startswith("| cross_border | 300 | 0.88 (+0.01 🟢) | 0.3 (-0.01 🔴)")
    # A slice the base did not have shows plain values.
    assert table_row(body, "small_fraud").startswith("| small_fraud | 200 | 0.8 |")


def test_gate_passed_lists_every_check_and_the_champion() -> None:
    body = pr_report.build_report(METRICS, BASE, GATE_PASSED)
    assert "✅ Gate passed" in body.splitlines()[1]
    assert "Gate **passed** ✅ (champion: git `main@0123456789ab`)" in body
    assert "| threshold_roc_auc_min | ✅ pass | 0.91 | 0.8 | roc_auc >= 0.8 |" in body
    # A pipe in a detail must not break the table.
    assert "| latency_ms_per_row | ✅ pass | 0.01 | 0.5 | a \\| b |" in body


def test_gate_failure_is_the_headline_and_names_the_failing_check() -> None:
    body = pr_report.build_report(METRICS, BASE, GATE_FAILED, outcome="failure")
    assert "❌ Gate failed" in body.splitlines()[1]
    assert "| no_regression_pr_auc | ❌ FAIL | -0.03 | -0.02 |" in body
    assert "`dvc repro` failed" in body


def test_the_champion_source_names_the_tracking_server_it_came_from() -> None:
    champion = {"source": "registry", "reference": "model v3", "location": "https://mlflow.example.com"}
    body = pr_report.build_report(METRICS, BASE, {**GATE_PASSED, "champion": champion})
    assert "(champion: registry `model v3`, from https://mlflow.example.com)" in body


def test_no_champion_is_said_plainly() -> None:
    body = pr_report.build_report(METRICS, BASE, {**GATE_PASSED, "champion": None})
    assert "no champion yet: absolute thresholds only" in body


def test_a_pipeline_that_stopped_early_still_gets_a_report() -> None:
    body = pr_report.build_report(None, None, None, outcome="failure")
    assert body.startswith(pr_report.MARKER)
    assert "⚠️ The pipeline failed before the gate decided" in body
    assert "evaluate stage did not run" in body
    assert "The gate did not run" in body


def test_plots_link_to_the_run_artifact(tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    for name in ("roc", "precision_recall"):
        (plots / f"{name}.json").write_text("[]", encoding="utf-8")
    body = pr_report.build_report(
        METRICS, BASE, GATE_PASSED, plots_dir=plots, run_url="https://github.com/o/r/actions/runs/1"
    )
    assert "Precision-recall, ROC" in body
    assert "[`retrain-reports` artifact](https://github.com/o/r/actions/runs/1#artifacts)" in body


DVC_DIFF = """\
| Path                 | Metric                 | main   | workspace   | Change   |
|----------------------|------------------------|--------|-------------|----------|
| reports/gate.json    | checks.0.name          | -      | roc_auc_min | -        |
| reports/metrics.json | overall.roc_auc        | 0.89   | 0.91        | 0.02     |
| reports/metrics.json | overall.rows           | -      | 1000        | -        |
| reports/metrics.json | behavioural.mft.passed | True   | False       | -        |
"""


def test_dvc_diff_is_embedded_folded_with_numbers_only() -> None:
    body = pr_report.build_report(METRICS, BASE, GATE_PASSED, dvc_diff=DVC_DIFF)
    assert "<code>dvc metrics diff</code>" in body
    assert "| reports/metrics.json | overall.roc_auc        | 0.89   | 0.91        | 0.02     |" in body
    assert "overall.rows" in body
    assert "checks.0.name" not in body and "behavioural.mft.passed" not in body


def test_dvc_diff_is_capped() -> None:
    rows = "\n".join(f"| m.json | overall.m{i} | 1 | 2 | 1 |" for i in range(400))
    trimmed = pr_report.numeric_dvc_diff("| Path | Metric | a | b | Change |\n|---|---|---|---|---|\n" + rows)
    assert trimmed.count("| m.json |") == pr_report.MAX_DVC_DIFF_ROWS
    assert trimmed.endswith(f"_({400 - pr_report.MAX_DVC_DIFF_ROWS} more rows in the artifact)_")
    assert pr_report.numeric_dvc_diff("| Path | Metric |\n|---|---|") == "No numeric metric changed."


def test_huge_bodies_are_truncated_below_githubs_limit() -> None:
    huge = pr_report.build_report(METRICS, BASE, GATE_PASSED, dvc_diff="x" * 100_000)
    assert len(huge) < 65_536
    assert huge.rstrip().endswith("_(report truncated; the full tables are in the artifact)_")


def test_package_line_names_the_bento() -> None:
    body = pr_report.build_report(
        METRICS,
        BASE,
        GATE_PASSED,
        package={"bento_tag": "fraud:abc", "model_version": 3, "gate_passed": True},
    )
    assert "Packaged: bento `fraud:abc`, registered model version 3." in body


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "–"), (True, "yes"), (3, "3"), (0.123456, "0.1235"), (float("nan"), "NaN"), ("a|b", "a\\|b")],
)
def test_fmt(value: object, text: str) -> None:
    assert pr_report.fmt(value) == text


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_cli_reads_the_base_from_git_and_writes_the_body(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    git(tmp_path, "init", "-q", "-b", "main")
    (reports / "metrics.json").write_text(json.dumps(BASE), encoding="utf-8")
    git(tmp_path, "add", "reports/metrics.json")
    git(tmp_path, "commit", "-q", "-m", "base")
    (reports / "metrics.json").write_text(json.dumps(METRICS), encoding="utf-8")
    (reports / "gate.json").write_text(json.dumps(GATE_FAILED), encoding="utf-8")
    (tmp_path / "diff.md").write_text(DVC_DIFF, encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    assert (
        pr_report.main(
            ["--base-rev", "main", "--dvc-diff", "diff.md", "--outcome", "failure", "-o", "out/pr_report.md"]
        )
        == 0
    )

    body = (tmp_path / "out" / "pr_report.md").read_text(encoding="utf-8")
    assert body.startswith(pr_report.MARKER)
    assert table_row(body, "roc_auc") == "| roc_auc | 0.89 | 0.91 | +0.02 🟢 |"
    assert "❌ Gate failed" in body and "overall.roc_auc" in body


def test_cli_with_an_unknown_base_rev_still_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text(json.dumps(METRICS), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not even a git repository
    assert pr_report.main(["--base-rev", "no-such-rev"]) == 0
    body = (tmp_path / "reports" / "pr_report.md").read_text(encoding="utf-8")
    assert "| metric | no-such-rev (no metrics) | this branch | change |" in body
    assert "The gate did not run" in body


def write_reports(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(METRICS), encoding="utf-8")
    (folder / "gate.json").write_text(json.dumps(GATE_PASSED), encoding="utf-8")


def age(path: Path, seconds: int) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - seconds * 1_000_000_000))


def test_after_a_failed_repro_reports_from_an_earlier_run_are_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The committed gate.json of the last good run must not pass for this failed run's decision."""
    monkeypatch.chdir(tmp_path)
    write_reports(tmp_path / "reports")
    for name in ("metrics.json", "gate.json"):
        age(tmp_path / "reports" / name, 60)
    (tmp_path / "started").touch()
    validation = {"passed": True, "rows_total": 10, "rows_valid": 10, "rows_quarantined": 0}
    (tmp_path / "reports" / "validation.json").write_text(json.dumps(validation), encoding="utf-8")

    assert pr_report.main(["--outcome", "failure", "--started", "started", "--base-rev", "x"]) == 0

    body = (tmp_path / "reports" / "pr_report.md").read_text(encoding="utf-8")
    assert "⚠️ The pipeline failed before the gate decided" in body
    assert "The gate did not run" in body and "evaluate stage did not run" in body
    assert "Data: 10 rows" in body  # written by this run: kept


def test_a_successful_repro_keeps_reports_it_did_not_need_to_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An up-to-date pipeline rewrites nothing; dvc.lock vouches for the committed reports."""
    monkeypatch.chdir(tmp_path)
    write_reports(tmp_path / "reports")
    age(tmp_path / "reports" / "gate.json", 60)
    (tmp_path / "started").touch()
    assert pr_report.main(["--outcome", "success", "--started", "started", "--base-rev", "x"]) == 0
    assert "✅ Gate passed" in (tmp_path / "reports" / "pr_report.md").read_text(encoding="utf-8")


def test_a_pipeline_that_never_started_claims_no_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_reports(tmp_path / "reports")
    assert pr_report.main(["--outcome", "failure", "--started", "never-touched", "--base-rev", "x"]) == 0
    body = (tmp_path / "reports" / "pr_report.md").read_text(encoding="utf-8")
    assert "The gate did not run" in body and "✅" not in body.splitlines()[1]
