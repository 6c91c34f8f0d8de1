"""Pipeline-slice tests: `dvc repro` on a throwaway copy of this project, the way a user runs it.

The tests of this module share one workspace and run in order: a full run, a no-op rerun,
then ways the pipeline must stop.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
from conftest import make_workspace, run

FAST = [sys.executable, "tools/params.py", "debug=fast"]


def reports(workspace: Path, name: str) -> dict:
    return json.loads((workspace / "reports" / name).read_text())


def test_repro_runs_every_stage_and_writes_the_contracts(workspace: Path) -> None:
    run(FAST, workspace)
    result = run(["dvc", "repro"], workspace, timeout=900)
    for stage in ("validate", "train", "evaluate", "gate", "package"):
        assert f"Running stage '{stage}'" in result.stdout
    validation = reports(workspace, "validation.json")
    assert (
        validation["passed"] and validation["rows_total"] == validation["rows_valid"] + validation["rows_quarantined"]
    )
    metrics = reports(workspace, "metrics.json")
    assert {"roc_auc", "pr_auc", "brier", "log_loss", "recall_at_precision_0.8"} <= set(metrics["overall"])
    assert metrics["latency"]["ms_per_row_batch"] > 0 and metrics["behavioural"]
    gate = reports(workspace, "gate.json")
    assert gate["passed"] and gate["champion"] is None
    assert all({"name", "passed", "observed", "limit", "detail"} <= set(check) for check in gate["checks"])
    package = reports(workspace, "package.json")
    assert package["gate_passed"] is True and package["bento_tag"] and package["model_version"] == "1"
    card = (workspace / "reports" / "model_card.md").read_text()
    assert card.startswith("---\n") and "model-index" in card and "## Gate decision: PASSED" in card
    html = (workspace / "reports" / "model_card.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    for plot in ("roc", "precision_recall", "calibration", "confusion"):
        assert (workspace / "reports" / "plots" / f"{plot}.json").exists()


def test_second_repro_is_a_no_op(workspace: Path) -> None:
    result = run(["dvc", "repro"], workspace)
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date" in run(["dvc", "status"], workspace).stdout


def test_impossible_threshold_stops_at_gate_and_package_does_not_run(workspace: Path) -> None:
    (workspace / "reports" / "package.json").unlink()
    run([*FAST, "gate.thresholds.roc_auc.min=0.999"], workspace)
    result = run(["dvc", "repro"], workspace, check=False)
    assert result.returncode != 0
    assert "Running stage 'gate'" in result.stdout and "Running stage 'package'" not in result.stdout
    assert "threshold_roc_auc_min" in result.stdout and "FAIL" in result.stdout
    gate = reports(workspace, "gate.json")
    assert not gate["passed"]
    assert not (workspace / "reports" / "package.json").exists()
    run(FAST, workspace)


def test_package_refuses_a_failed_gate_when_run_alone(workspace: Path) -> None:
    result = run([sys.executable, "pipelines/package.py"], workspace, check=False)
    assert result.returncode == 2 and "the gate did not pass" in result.stderr


def test_committed_model_becomes_the_champion(workspace: Path) -> None:
    run(["dvc", "repro"], workspace)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    run(["git", "add", "-A"], workspace)
    run([*git, "commit", "-q", "-m", "first model"], workspace)
    run([sys.executable, "pipelines/gate.py", "gate.champion.source=git"], workspace)
    gate = reports(workspace, "gate.json")
    assert gate["passed"] and gate["champion"]["source"] == "git"
    regression = next(c for c in gate["checks"] if c["name"] == "no_regression_pr_auc")
    assert regression["observed"] == 0.0, "the same model must compare as exactly equal"


def test_corrupted_raw_data_stops_at_validate(workspace: Path) -> None:
    raw = workspace / "data" / "raw" / "transactions.parquet"
    frame = pd.read_parquet(raw)
    frame.loc[: len(frame) // 10, "amount"] = -1.0  # 10% bad rows, over the 5% limit
    raw.unlink()  # DVC links the file to its cache: replace it, never write through the link
    frame.to_parquet(raw, index=False)
    result = run(["dvc", "repro"], workspace, check=False)
    assert result.returncode != 0 and "Running stage 'train'" not in result.stdout
    assert "validation FAILED" in result.stdout and "amount: greater_than(0.0) failed" in result.stdout
    report = reports(workspace, "validation.json")
    assert report["rows_quarantined"] + report["rows_valid"] == report["rows_total"] == len(frame)
    assert report["rows_quarantined"] >= len(frame) // 10


def test_exp_run_override_reaches_training_and_mlflow(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path, rows=8000)
    run(
        ["dvc", "exp", "run", "-S", "debug=fast", "-S", "trainer.max_epochs=1", "validate", "train"],
        workspace,
        timeout=900,
    )
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and runs[0].data.params["trainer/max_epochs"] == "1"


def test_dvc_push_then_pull_in_a_fresh_clone_restores_the_bytes(workspace: Path, tmp_path: Path) -> None:
    run(["git", "checkout", "--", "."], workspace)
    run(["dvc", "checkout", "--force"], workspace)
    run(["dvc", "push"], workspace)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    remote = workspace.parent / "remote"
    run(["dvc", "remote", "add", "--local", "-f", "storage", str(remote)], clone)
    run(["dvc", "remote", "default", "--local", "storage"], clone)
    run(["dvc", "pull"], clone)
    for pointer in ("data/raw/transactions.parquet", "data/golden/golden.parquet", "models/model.pt"):
        assert (clone / pointer).read_bytes() == (workspace / pointer).read_bytes(), pointer
    shutil.rmtree(clone)
