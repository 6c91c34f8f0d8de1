"""Pipeline-slice tests: `dvc repro` on a throwaway copy of this project, the way a user runs it.

The tests of this module share one workspace (under a hidden folder) and run in order: a full
run, a no-op and a forced rerun, package killed part-way and rerun (nothing is registered before
its bento is built), then a real champion, and ways the pipeline must stop. They are the slow tier's (`pytest -m slow`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_workspace, run, workspace_env

from {{ cookiecutter.package_name }}.lineage import file_md5
from {{ cookiecutter.package_name }}.release.registry import BENTO_TAG, CHALLENGER, PACKAGE_JOURNAL
from {{ cookiecutter.package_name }}.serving import BENTO_MODEL_LABEL
from {{ cookiecutter.package_name }}.serving.api import MODEL_NAME

FAST = [sys.executable, "tools/params.py", "debug=fast"]
# Whole-pipeline runs take minutes: the slow tier (CI's `slow tests` job) runs them on every push.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared project copy, under a dot-folder: `bentoml build` refuses hidden paths, package must not care."""
    hidden = tmp_path_factory.mktemp("workspace") / ".hidden"
    hidden.mkdir()
    return make_workspace(hidden)


def reports(workspace: Path, name: str) -> dict:
    return json.loads((workspace / "reports" / name).read_text())


def check_named(gate: dict, name: str) -> dict:
    return next(check for check in gate["checks"] if check["name"] == name)


def assert_every_slice_named(gate: dict, metrics: dict) -> None:
    """Each slice of metrics.json has a verdict in gate.json (judged, or listed as not judged)."""
    names = [check["name"] for check in gate["checks"]]
    for slice_name in metrics["slices"]:
        assert any(name.endswith(f"[{slice_name}]") for name in names), slice_name


def commit(workspace: Path, message: str) -> None:
    """Commit dvc.lock and tracked files, the way a release pins its model (DVC outputs stay out of git)."""
    run(["git", "add", "dvc.lock"], workspace)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    run([*git, "commit", "-q", "-a", "--allow-empty", "-m", message], workspace)


def registry(workspace: Path) -> tuple[dict[str, dict[str, str]], str | None]:
    """Every registry version with its tags, and the version `challenger` points at."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    aliases = next((model.aliases for model in client.search_registered_models()), {})
    challenger = aliases.get(CHALLENGER)  # an int
    return {str(v.version): dict(v.tags) for v in client.search_model_versions()}, (
        None if challenger is None else str(challenger)
    )


# Where `kill -9` lands in the package stage, and what it leaves of its run: (bento models, bentos, RUNNING runs).
KILL_POINTS = {"bento model saved": (1, 0, 0), "bento built": (1, 1, 0), "package run started": (1, 1, 1)}
STORE_LISTING = """
import json, sys, bentoml
models = {str(m.tag): m.info.labels for m in bentoml.models.list() if m.tag.name == sys.argv[1]}
bentos = {str(b.tag): b.info.labels for b in bentoml.bentos.list()}
print(json.dumps({"bentos": bentos, "models": models}))
"""


def bento_store(workspace: Path) -> dict[str, dict[str, dict[str, str]]]:
    """The labels of every bento and bento model in the workspace's BentoML store, by tag."""
    return json.loads(run([sys.executable, "-c", STORE_LISTING, MODEL_NAME], workspace).stdout.splitlines()[-1])


def saved(store: Path) -> set[str]:
    """Items a BentoML store has finished saving: it names an item `latest` once all its files are in."""
    return {f"{path.parent.name}:{version}" for path in store.glob("*/latest") if (version := path.read_text().strip())}


def package_runs(workspace: Path, status: str) -> set[str]:
    """Ids of the package stage's MLflow runs with this status, read from the database without MLflow."""
    query = (
        "SELECT runs.run_uuid FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
        "WHERE tags.key = 'stage' AND tags.value = 'package' AND runs.status = ?"
    )
    with closing(sqlite3.connect(workspace / "mlflow.db", timeout=60)) as db:
        return {row[0] for row in db.execute(query, (status,))}


def wait_for(stage: subprocess.Popen[bytes], reached: Callable[[], object], log: Path) -> None:
    deadline = time.monotonic() + 600
    while not reached():
        assert stage.poll() is None, f"package ended before the kill point:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "package never reached the kill point"
        time.sleep(0.05)


def kill_package_at(workspace: Path, point: str, log: Path) -> None:
    """`python pipelines/package.py` (the stage's command), killed with SIGKILL, children too, once at `point`."""
    home = Path(workspace_env(workspace)["BENTOML_HOME"])
    models, bentos, running = saved(home / "models"), saved(home / "bentos"), package_runs(workspace, "RUNNING")
    steps = {
        "bento model saved": lambda: saved(home / "models") - models,
        "bento built": lambda: saved(home / "bentos") - bentos,
        "package run started": lambda: package_runs(workspace, "RUNNING") - running,
    }
    with log.open("w") as output, closing(sqlite3.connect(workspace / "mlflow.db", isolation_level=None)) as db:
        stage = subprocess.Popen(
            [sys.executable, "pipelines/package.py"],
            cwd=workspace,
            env=workspace_env(workspace),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # A write lock on the registry's database holds the stage at its next MLflow write (creating the
        # package run, then logging the model), so the kill lands before it.
        lock_after = "package run started" if point == "package run started" else "bento model saved"
        try:
            for step in list(steps)[: list(steps).index(point) + 1]:
                wait_for(stage, steps[step], log)
                if step == lock_after:
                    db.execute("BEGIN EXCLUSIVE")
        finally:
            with suppress(ProcessLookupError):
                os.killpg(stage.pid, signal.SIGKILL)
            returncode = stage.wait()
    assert returncode == -signal.SIGKILL, f"package was not killed (exit {returncode}):\n{log.read_text()[-3000:]}"


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
    assert metrics["latency"]["ms_single_row_p99"] > 0 and metrics["behavioural"]
    gate = reports(workspace, "gate.json")
    assert gate["passed"] and gate["champion"] is None
    assert "first release" in check_named(gate, "champion_lookup")["detail"]
    assert all({"name", "passed", "observed", "limit", "detail"} <= set(check) for check in gate["checks"])
    assert_every_slice_named(gate, metrics)
    package = reports(workspace, "package.json")
    assert package["gate_passed"] is True and package["bento_tag"] and package["model_version"] == "1"
    assert package["model_md5"] == gate["candidate"]["model_md5"]
    assert package["mlflow_run_id"] != "n/a", "the training run is found again by the model's md5"
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


def test_forced_repro_rebuilds_the_same_model_byte_for_byte(workspace: Path) -> None:
    model = workspace / "models" / "model.pt"
    before, metrics = file_md5(model), reports(workspace, "metrics.json")
    result = run(["dvc", "repro", "-f"], workspace, timeout=900)
    assert "Running stage 'train'" in result.stdout
    assert file_md5(model) == before, "models/model.pt must be a pure function of code, data and params"
    again = reports(workspace, "metrics.json")
    for part in ("overall", "slices", "behavioural"):  # latency is a measurement, not a function of the model
        assert again[part] == metrics[part], part
    assert "Data and pipelines are up to date" in run(["dvc", "status"], workspace).stdout


def test_a_param_reruns_exactly_the_stages_that_read_it(workspace: Path) -> None:
    for overrides in (["gate.regression.n_bootstrap=400"], []):  # changed, then back (from DVC's run cache)
        run([*FAST, *overrides], workspace)
        result = run(["dvc", "repro"], workspace)
        redone = {
            stage
            for stage in ("validate", "train", "evaluate", "gate", "package")
            if f"Stage '{stage}' didn't change" not in result.stdout
        }
        assert redone == {"gate"}, result.stdout


def package_killed(workspace: Path, point: str, change: str, log: Path) -> tuple[set[str], str]:
    """Package killed at `point` after `change`, a param only it reads: (the versions before, its journal id).

    The change gives `dvc repro` package to run, as it had when it was killed.
    """
    run([*FAST, change], workspace)
    run(["dvc", "repro", "gate"], workspace, timeout=900)  # a no-op after the tests above; all of it when run alone
    before, challenger = registry(workspace)
    kill_package_at(workspace, point, log)
    versions, aliased = registry(workspace)
    # The registry version is created only after the bento is built: a kill before that leaves none.
    assert versions == before and aliased == challenger, "no version is registered before its bento is built"
    journal = json.loads((workspace / "bentos" / ".state" / "package-journal.json").read_text())
    return set(before), journal["id"]


def assert_package_finished(workspace: Path, before: set[str]) -> None:
    """One new version, finished and `challenger`; every bento and bento model is that of a registered version."""
    versions, aliased = registry(workspace)
    (new,) = set(versions) - before
    assert aliased == new, "the new version is challenger"
    package = reports(workspace, "package.json")
    assert package["model_version"] == new and package["bento_tag"] == versions[new][BENTO_TAG]
    assert package["model_md5"] == versions[new]["model_md5"] == file_md5(workspace / "models" / "model.pt")
    store = bento_store(workspace)
    registered = {tags[BENTO_TAG]: tags[PACKAGE_JOURNAL] for tags in versions.values()}
    assert set(store["bentos"]) <= set(registered), "a bento no version names is left over"
    journals = Counter(labels[PACKAGE_JOURNAL] for labels in store["models"].values())
    assert all(count == 1 and journal in registered.values() for journal, count in journals.items()), journals
    assert store["models"][package["bento_model_tag"]][PACKAGE_JOURNAL] == versions[new][PACKAGE_JOURNAL]
    # deploy.py status names a slot's model by this label: the bento's registry version does not exist yet.
    assert store["bentos"][package["bento_tag"]][BENTO_MODEL_LABEL] == package["bento_model_tag"]
    assert not (workspace / "bentos" / ".state" / "package-journal.json").exists(), "a finished run clears its journal"
    assert not package_runs(workspace, "RUNNING"), "no package run is left RUNNING"
    assert "Data and pipelines are up to date" in run(["dvc", "status"], workspace).stdout


@pytest.mark.parametrize("point", KILL_POINTS)
def test_package_killed_at_any_point_is_finished_by_the_next_repro(workspace: Path, point: str, tmp_path: Path) -> None:
    change = f"serve.timeout_s={31 + list(KILL_POINTS).index(point)}"  # another value each time
    before, journal = package_killed(workspace, point, change, tmp_path / "package.log")
    left = bento_store(workspace)
    owned = tuple(sum(v[PACKAGE_JOURNAL] == journal for v in left[kind].values()) for kind in ("models", "bentos"))
    running = package_runs(workspace, "RUNNING")
    assert (*owned, len(running)) == KILL_POINTS[point], (left, running)
    result = run(["dvc", "repro", "package"], workspace)
    assert "Running stage 'package'" in result.stdout
    assert f"removed {MODEL_NAME}:{journal}, left by an unfinished package run" in result.stdout, result.stdout
    for run_id in running:  # the killed run's MLflow run is closed by the next one, as train does
        assert f"marked MLflow run {run_id}, left running by a killed package run, as KILLED" in result.stdout
    assert running <= package_runs(workspace, "KILLED")
    assert_package_finished(workspace, before)


def test_a_bento_model_save_torn_by_a_kill_does_not_block_the_next_repro(workspace: Path, tmp_path: Path) -> None:
    before, journal = package_killed(workspace, "bento model saved", "serve.timeout_s=34", tmp_path / "package.log")
    torn = Path(workspace_env(workspace)["BENTOML_HOME"]) / "models" / MODEL_NAME / journal
    (torn / "model.yaml").unlink()  # what a kill leaves during BentoML's file-by-file copy into its store
    assert run([sys.executable, "-c", STORE_LISTING, MODEL_NAME], workspace, check=False).returncode != 0
    result = run(["dvc", "repro", "package"], workspace)
    assert f"removed {MODEL_NAME}:{journal}, left by an unfinished package run" in result.stdout
    assert not torn.exists()
    assert_package_finished(workspace, before)


# The last window: the version is registered, `challenger` not yet moved. A trigger refuses the alias write, so
# the stage stops exactly there (SQLite cannot pause a writer for a kill to land in that gap).
HOLD_ALIASES = [
    f"CREATE TRIGGER hold_alias_{op.lower()} BEFORE {op} ON registered_model_aliases "
    "BEGIN SELECT RAISE(ABORT, 'held by the test'); END"
    for op in ("INSERT", "UPDATE")
]


def test_package_stopped_after_registering_keeps_that_version_and_its_bento(workspace: Path) -> None:
    run([*FAST, "serve.timeout_s=35"], workspace)
    run(["dvc", "repro", "gate"], workspace, timeout=900)
    before, challenger = registry(workspace)
    with closing(sqlite3.connect(workspace / "mlflow.db", isolation_level=None)) as db:
        for statement in HOLD_ALIASES:
            db.execute(statement)
    stopped = run([sys.executable, "pipelines/package.py"], workspace, check=False)
    with closing(sqlite3.connect(workspace / "mlflow.db", isolation_level=None)) as db:
        for op in ("insert", "update"):
            db.execute(f"DROP TRIGGER hold_alias_{op}")
    assert stopped.returncode != 0 and "held by the test" in stopped.stdout + stopped.stderr, stopped.stderr[-3000:]
    versions, aliased = registry(workspace)
    (kept,) = set(versions) - set(before)
    assert aliased == challenger, "challenger did not move"
    journal = json.loads((workspace / "bentos" / ".state" / "package-journal.json").read_text())["id"]
    assert versions[kept][PACKAGE_JOURNAL] == journal
    result = run(["dvc", "repro", "package"], workspace)
    assert f"package run {journal} was registered before it stopped" in result.stdout, result.stdout
    assert versions[kept][BENTO_TAG] in bento_store(workspace)["bentos"], "a registered version's bento stays"
    assert_package_finished(workspace, set(versions))


def test_impossible_threshold_stops_at_gate_and_package_does_not_run(workspace: Path) -> None:
    (workspace / "reports" / "package.json").unlink()
    run([*FAST, "dataset.thresholds.roc_auc.min=0.999"], workspace)
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


def test_package_refuses_a_gate_report_of_another_model_and_registers_nothing(workspace: Path) -> None:
    run(["dvc", "repro"], workspace)
    gate = reports(workspace, "gate.json")
    gate["candidate"]["model_md5"] = "0" * 32  # the approval of some other model
    (workspace / "reports" / "gate.json").write_text(json.dumps(gate))
    versions = registry(workspace)[0]
    result = run([sys.executable, "pipelines/package.py"], workspace, check=False)
    assert result.returncode == 2 and "approved other files" in result.stderr
    assert registry(workspace)[0] == versions


def test_committed_model_becomes_the_champion_and_passes_against_itself(workspace: Path) -> None:
    run(["dvc", "repro"], workspace)
    commit(workspace, "first model")
    run(["git", "checkout", "-q", "-b", "candidate"], workspace)
    commit(workspace, "work on a branch")  # main is now the release, not the candidate's own commit
    run(["dvc", "repro", "-f", "-s", "gate"], workspace)
    gate = reports(workspace, "gate.json")
    assert gate["passed"] and gate["champion"]["source"] == "git" and gate["champion"]["reference"].startswith("main")
    comparisons = [c for c in gate["checks"] if c["name"].startswith("no_regression")]
    assert comparisons and all(c["observed"] == 0.0 for c in comparisons if c["judged"])
    assert_every_slice_named(gate, reports(workspace, "metrics.json"))


def test_a_retrain_with_another_seed_passes_against_the_champion(workspace: Path) -> None:
    run([*FAST, "seed=7"], workspace)
    run(["dvc", "repro"], workspace, timeout=900)
    gate = reports(workspace, "gate.json")
    assert gate["passed"] and gate["champion"]["source"] == "git"
    assert gate["candidate"]["model_md5"] != gate["champion"]["model_md5"]


def test_a_clearly_worse_model_stops_at_the_gate_on_the_regression_check(workspace: Path) -> None:
    run([*FAST, "model.optimizer.lr=0", "trainer.max_epochs=1"], workspace)  # the weights never leave init
    result = run(["dvc", "repro"], workspace, check=False, timeout=900)
    assert result.returncode != 0 and "Running stage 'package'" not in result.stdout
    gate = reports(workspace, "gate.json")
    assert not gate["passed"] and not check_named(gate, "no_regression_pr_auc")["passed"]
    assert_every_slice_named(gate, reports(workspace, "metrics.json"))


def test_a_misspelled_champion_rev_fails_the_gate_with_the_reason(workspace: Path) -> None:
    run([*FAST, "gate.champion.rev=mian"], workspace)
    result = run(["dvc", "repro"], workspace, check=False, timeout=900)
    assert result.returncode != 0 and "Running stage 'package'" not in result.stdout
    lookup = check_named(reports(workspace, "gate.json"), "champion_lookup")
    assert not lookup["passed"] and "'mian' not found" in lookup["detail"]
    run(FAST, workspace)


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
    run(["git", "checkout", "HEAD", "--", "."], workspace)  # what the clone will check out, not the index
    run(["dvc", "checkout", "--force"], workspace)
    run(["dvc", "push"], workspace)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    remote = workspace.parent / "remote"
    run(["dvc", "remote", "add", "--local", "-f", "storage", str(remote)], clone)
    run(["dvc", "remote", "default", "--local", "storage"], clone)
    run(["dvc", "pull"], clone)
    for pointer in ("data/raw/transactions.parquet", "data/golden/transactions.parquet", "models/model.pt"):
        assert (clone / pointer).read_bytes() == (workspace / pointer).read_bytes(), pointer
    shutil.rmtree(clone)
