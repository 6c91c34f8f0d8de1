"""Training: reproducible on CPU, resumable after a kill, clear errors for impossible requests."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_workspace, run
from omegaconf import OmegaConf
from support import config_flow

from {{ cookiecutter.package_name }}.errors import TrainingError
from {{ cookiecutter.package_name }}.lineage import file_md5
from {{ cookiecutter.package_name }}.training.artifact import load_model
from {{ cookiecutter.package_name }}.training.model import BinaryClassifier
from {{ cookiecutter.package_name }}.training.run_state import LAST_CHECKPOINT, resume_point, write_run_state
from {{ cookiecutter.package_name }}.training.streaming import validation_mask

TRAIN = [sys.executable, "pipelines/train.py"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = make_workspace(tmp_path_factory.mktemp("training"), rows=12_000)
    run([sys.executable, "tools/params.py", "debug=fast"], workspace)
    run([sys.executable, "pipelines/validate.py"], workspace)
    return workspace


def _weights_and_metrics(workspace: Path) -> tuple[dict[str, torch.Tensor], dict]:
    model = load_model(workspace / "models" / "model.pt")
    return model.network.state_dict(), json.loads((workspace / "reports" / "train_metrics.json").read_text())


# In memory (the default for a small file) and streamed from parquet (forced by a size limit of 0 rows).
@pytest.mark.parametrize("overrides", [[], ["data.in_memory_max_rows=0", "data.shuffle_buffer_rows=2048"]])
def test_two_cpu_runs_are_bit_identical(trained: Path, overrides: list[str]) -> None:
    run([*TRAIN, *overrides], trained)
    first_weights, first_metrics = _weights_and_metrics(trained)
    first_md5 = file_md5(trained / "models" / "model.pt")
    run([*TRAIN, *overrides], trained)
    second_weights, second_metrics = _weights_and_metrics(trained)
    assert file_md5(trained / "models" / "model.pt") == first_md5
    assert first_metrics == second_metrics
    for name, tensor in first_weights.items():
        assert torch.equal(tensor, second_weights[name]), name


def _start(command: list[str], workspace: Path) -> subprocess.Popen[str]:
    """The stage in the background, set up as conftest.run sets it up."""
    return subprocess.Popen(
        command,
        cwd=workspace,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": str(workspace / "src"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{workspace / 'mlflow.db'}",
        },
    )


def _wait_for_epochs(process: subprocess.Popen[str], last: Path, epochs: int) -> None:
    """Block until `last` holds at least `epochs` finished epochs (or the process ends)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists() and torch.load(last, map_location="cpu", weights_only=False)["epoch"] + 1 >= epochs:
            return
        time.sleep(0.1)


def _runs(workspace: Path) -> dict[str, str]:
    """run id -> status of every run in the workspace's MLflow store (none before the first run)."""
    if not (workspace / "mlflow.db").exists():
        return {}
    with sqlite3.connect(workspace / "mlflow.db") as connection:
        return dict(connection.execute("SELECT run_uuid, status FROM runs").fetchall())


def _new_runs(workspace: Path, before: dict[str, str]) -> list[str]:
    return [status for run_id, status in _runs(workspace).items() if run_id not in before]


def _param_names(config: dict[str, Any], prefix: str = "") -> set[str]:
    """The config's leaves named as MLflow params: nested keys joined with "/", a list of mappings by index
    (`dataset/behaviour/invariance/0/name`), as Lightning flattens them; an empty mapping or list names none."""
    names: set[str] = set()
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            names |= _param_names(value, f"{name}/")
        elif isinstance(value, list) and all(isinstance(item, dict) for item in value):
            names |= {n for i, item in enumerate(value) for n in _param_names(item, f"{name}/{i}/")}
        else:
            names.add(name)
    return names


def test_each_param_is_logged_once_under_its_config_name(trained: Path) -> None:
    before = _runs(trained)
    run(TRAIN, trained)
    (run_id,) = _runs(trained).keys() - before.keys()
    with sqlite3.connect(trained / "mlflow.db") as connection:
        params = dict(connection.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)).fetchall())
    config = OmegaConf.to_container(OmegaConf.load(trained / "params.yaml"), resolve=True)
    assert isinstance(config, dict)
    bare = sorted(set(params) & set(inspect.signature(BinaryClassifier).parameters))
    assert not bare, f"the model's arguments are logged a second time under their bare names: {bare}"
    # The composed config, plus the one model argument that the data decides rather than the config.
    assert set(params) == _param_names(config) | {"model/in_features"}
    assert params["model/optimizer/lr"] == str(config["model"]["optimizer"]["lr"])
    assert params["model/in_features"] == str(load_model(trained / "models" / "model.pt").architecture["in_features"])


@pytest.mark.slow  # three training runs: over a minute on two shared cores
def test_a_killed_run_resumes_and_ends_like_an_unbroken_one(trained: Path) -> None:
    command = [*TRAIN, "trainer.max_epochs=6", "data.batch_size=256"]
    run(command, trained)
    unbroken, _ = _weights_and_metrics(trained)
    last = trained / "models" / "checkpoints" / "last.ckpt"
    last.unlink()  # the finished run's; the killed run writes its own
    process = _start(command, trained)
    _wait_for_epochs(process, last, 2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert 1 <= killed_at < 5, "the run was not killed between epochs 2 and 5"
    assert "RUNNING" in _runs(trained).values()

    changed = run([*command, "data.batch_size=512", "train.resume=true"], trained, check=False)
    assert changed.returncode == 2 and "data.batch_size" in changed.stderr
    resumed = run([*command, "train.resume=true"], trained)
    assert "resuming from" in resumed.stdout + resumed.stderr
    first_epoch_line = next(line for line in resumed.stdout.splitlines() if line.startswith("epoch "))
    assert first_epoch_line.startswith(f"epoch {killed_at + 2}/6"), first_epoch_line
    weights, metrics = _weights_and_metrics(trained)
    assert metrics["epochs"] == 6
    for name, tensor in unbroken.items():
        assert torch.equal(tensor, weights[name]), name
    assert f"trained {5 - killed_at} epochs ({killed_at + 2}-6)" in resumed.stdout
    assert "RUNNING" not in _runs(trained).values() and "KILLED" in _runs(trained).values()

    finished = run([*command, "train.resume=true"], trained, check=False)
    assert finished.returncode == 2 and "finished" in finished.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_mlflow_run_killed(trained: Path, signum: signal.Signals) -> None:
    before = _runs(trained)
    shutil.rmtree(trained / "models" / "checkpoints", ignore_errors=True)
    process = _start([*TRAIN, "trainer.max_epochs=40"], trained)
    _wait_for_epochs(process, trained / "models" / "checkpoints" / "last.ckpt", 1)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, output[-3000:]
    assert _new_runs(trained, before) == ["KILLED"], output[-3000:]


def test_an_error_after_the_run_started_ends_it_failed(trained: Path) -> None:
    before = _runs(trained)
    (trained / "blocker").write_text("a file where the model's folder should be\n")
    result = run([*TRAIN, "trainer.max_epochs=1", "paths.model=blocker/model.pt"], trained, check=False)
    assert result.returncode != 0
    assert _new_runs(trained, before) == ["FAILED"], result.stderr[-3000:]


def test_an_unknown_trainer_key_changes_nothing(trained: Path) -> None:
    checkpoints = trained / "models" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / "keep").write_text("kept\n")
    before = _runs(trained)
    for override, message in [
        ("trainer.foo=1", "bad override trainer.foo=1: Could not override 'trainer.foo'."),  # Hydra's struct check
        ("+trainer.foo=1", "unknown trainer setting(s) trainer.foo: see the arguments of lightning.pytorch.Trainer"),
    ]:
        result = run([*TRAIN, override], trained, check=False)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert (checkpoints / "keep").read_text() == "kept\n"
    assert _runs(trained) == before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hidden_sizes=[-5]", "model.hidden_sizes: a non-empty list of layer widths, each an integer >= 1"),
        ("model.dropout=1.5", "model.dropout: a probability, 0 <= dropout < 1; got 1.5"),
        # Values only Lightning's Trainer checks: it is built before anything is written, too.
        ("trainer.precision=bogus", "trainer.precision: Precision 'bogus' is invalid."),
        ("+trainer.val_check_interval=-0.5", "trainer.val_check_interval: You have passed invalid value -0.5"),
    ],
)
def test_a_bad_model_or_trainer_value_deletes_nothing(trained: Path, override: str, message: str) -> None:
    """Model and Trainer are built before the run directory is cleared: the last run's checkpoints survive."""
    checkpoints = trained / "models" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    kept = {name: f"the last run's {name}\n" for name in ("best.ckpt", "last.ckpt")}
    for name, text in kept.items():
        (checkpoints / name).write_text(text)
    before = _runs(trained)
    result = run([*TRAIN, override], trained, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert {name: (checkpoints / name).read_text() for name in kept} == kept
    assert _runs(trained) == before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # `+key=value` adds a key Hydra's config does not have; training still refuses it, before any side effect.
        (["+trainer.max_epoch=2"], "did you mean max_epochs?"),
        (["+model.hidden=[8]"], "unknown model setting(s) model.hidden"),
        (["+trainer.logger=false"], "is set by the train stage itself"),
    ],
)
def test_what_training_cannot_run_is_one_clear_line(trained: Path, overrides: list[str], message: str) -> None:
    result = run([*TRAIN, *overrides], trained, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_the_config_enters_each_module_at_most_twice(trained: Path, tmp_path: Path) -> None:
    """Followed from pipelines/train.py, the composed config is handed into each module of the package at
    most twice: a module reads what it needs and passes values (cfg.model, a path) further down, not cfg."""
    out = tmp_path / "entries.json"
    run([sys.executable, str(Path(config_flow.__file__)), "pipelines/train.py", str(out)], trained)
    entries = json.loads(out.read_text())
    assert entries.get(f"{config_flow.PACKAGE}.training.train") == 1, entries  # the stage's own call is seen
    assert max(entries.values()) <= 2, entries


def test_optimizer_and_scheduler_are_chosen_in_config(trained: Path) -> None:
    """conf/model's `optimizer` and `scheduler` (Hydra partials) are what trains: StepLR cuts lr tenfold."""
    config = OmegaConf.load(trained / "params.yaml")
    scheduler = "{_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:2,gamma:0.1}"
    sgd = ["model.optimizer._target_=torch.optim.SGD", "~model.optimizer.weight_decay"]
    run([*TRAIN, f"model.scheduler={scheduler}", "trainer.max_epochs=3", *sgd], trained)
    last = torch.load(trained / "models" / "checkpoints" / LAST_CHECKPOINT, map_location="cpu", weights_only=False)
    assert last["lr_schedulers"][0]["_last_lr"] == pytest.approx([config.model.optimizer.lr * 0.1])
    assert "momentum" in last["optimizer_states"][0]["param_groups"][0]  # SGD's, which AdamW has not
    assert "amsgrad" not in last["optimizer_states"][0]["param_groups"][0]


def test_resume_point_refuses_anything_but_the_same_unfinished_run(tmp_path: Path) -> None:
    identity = {"config": {"seed": "1", "data.batch_size": "256"}, "data_md5": "a"}
    assert resume_point(tmp_path, False, identity) is None
    with pytest.raises(TrainingError, match="no checkpoint"):
        resume_point(tmp_path, True, identity)
    write_run_state(tmp_path, {**identity, "finished": False, "mlflow_run_id": None})
    with pytest.raises(TrainingError, match="before its first epoch ended"):
        resume_point(tmp_path, True, identity)
    (tmp_path / LAST_CHECKPOINT).write_bytes(b"")
    assert resume_point(tmp_path, True, identity) == str(tmp_path / LAST_CHECKPOINT)
    with pytest.raises(TrainingError, match="training data changed"):
        resume_point(tmp_path, True, {**identity, "data_md5": "b"})
    with pytest.raises(TrainingError, match=r"settings differ \(data.batch_size\)"):
        resume_point(tmp_path, True, {**identity, "config": {"seed": "1", "data.batch_size": "512"}})
    write_run_state(tmp_path, {**identity, "finished": True, "mlflow_run_id": None})
    with pytest.raises(TrainingError, match="finished"):
        resume_point(tmp_path, True, identity)


def test_resume_without_a_checkpoint_says_so(trained: Path, tmp_path: Path) -> None:
    result = run([*TRAIN, "train.resume=true", f"paths.checkpoints={tmp_path / 'none'}"], trained, check=False)
    assert result.returncode == 2 and "no checkpoint" in result.stderr


@pytest.mark.slow  # two training runs and a copy of the project
def test_a_copied_project_logs_its_artifacts_inside_itself(trained: Path, tmp_path: Path) -> None:
    command = [*TRAIN, "trainer.max_epochs=2", "trainer.log_every_n_steps=50"]
    run(command, trained)
    copy = tmp_path / "moved" / trained.name
    shutil.copytree(trained, copy, symlinks=True)
    before = _runs(copy)
    run(command, copy)
    with sqlite3.connect(copy / "mlflow.db") as connection:
        uris = dict(connection.execute("SELECT run_uuid, artifact_uri FROM runs").fetchall())
    (run_id,) = [run_id for run_id in uris if run_id not in before]
    assert uris[run_id] == f"{(copy / 'mlartifacts').resolve().as_uri()}/{run_id}/artifacts"
    assert (copy / "mlartifacts" / run_id / "artifacts" / "config.yaml").is_file()
    with sqlite3.connect(copy / "mlflow.db") as connection:
        query = "SELECT model_id, artifact_location FROM logged_models WHERE source_run_id = ?"
        model_id, model_uri = connection.execute(query, (run_id,)).fetchone()
    assert model_uri == f"{(copy / 'mlartifacts').resolve().as_uri()}/models/{model_id}/artifacts"
    assert (copy / "mlartifacts" / "models" / model_id / "artifacts" / "MLmodel").is_file()
    assert not (trained / "mlartifacts" / run_id).exists()
    assert not (trained / "mlartifacts" / "models" / model_id).exists()
    # Metrics reach MLflow once an epoch, even with fewer batches than log_every_n_steps.
    with sqlite3.connect(copy / "mlflow.db") as connection:
        query = "SELECT COUNT(*) FROM metrics WHERE run_uuid = ? AND key = 'train/loss'"
        assert connection.execute(query, (run_id,)).fetchone()[0] == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where no GPU exists")
def test_gpu_asked_where_none_exists_is_a_clear_error(trained: Path) -> None:
    result = run([*TRAIN, "trainer.accelerator=gpu"], trained, check=False)
    assert result.returncode == 2
    assert "none is visible" in result.stderr and "Traceback" not in result.stderr


def test_empty_training_set_is_a_clear_error(trained: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    pd.read_parquet(trained / "data" / "validated" / "train.parquet").head(0).to_parquet(empty)
    # A report that vouches for this very file, so that training itself is what objects.
    (tmp_path / "validation.json").write_text(json.dumps({"passed": True, "valid_md5": file_md5(empty)}))
    result = run([*TRAIN, f"paths.validated={empty}", f"paths.reports={tmp_path}"], trained, check=False)
    assert result.returncode == 2 and "the training set is empty" in result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_training_path(trained: Path) -> None:
    run([*TRAIN, "trainer.accelerator=gpu", "trainer.precision=bf16-mixed", "trainer.deterministic=false"], trained)
    metrics = json.loads((trained / "reports" / "train_metrics.json").read_text())
    assert metrics["val_roc_auc"] > 0.6


@pytest.mark.slow
def test_two_cpu_processes_with_ddp_train_one_run_and_one_model(trained: Path) -> None:
    # Overrides on a stage script compose conf/ as `dvc exp run -S` does: the group switch is honoured.
    run([*TRAIN, "debug=fast", "trainer.max_epochs=2"], trained)
    single = json.loads((trained / "reports" / "train_metrics.json").read_text())
    before = _runs(trained)
    result = run([*TRAIN, "debug=fast", "trainer=ddp_cpu", "trainer.max_epochs=2"], trained)
    assert "distributed_backend=gloo" in result.stdout + result.stderr, "not trained with DDP"
    assert _new_runs(trained, before) == ["FINISHED"]
    checkpoints = sorted(path.name for path in (trained / "models" / "checkpoints").iterdir())
    assert checkpoints == ["best.ckpt", "last.ckpt", "run.json"]
    metrics = json.loads((trained / "reports" / "train_metrics.json").read_text())
    assert metrics["train_rows"] == single["train_rows"] and metrics["epochs"] == 2
    assert metrics["val_roc_auc"] > single["val_roc_auc"] - 0.05
    assert load_model(trained / "models" / "model.pt").metadata["train_rows"] == single["train_rows"]


@pytest.mark.slow
def test_ddp_streams_each_rank_its_own_row_groups(trained: Path, tmp_path: Path) -> None:
    validated = tmp_path / "train.parquet"
    table = pq.read_table(trained / "data" / "validated" / "train.parquet")
    pq.write_table(table, validated, row_group_size=1_000)  # many row groups, as a big file has
    (tmp_path / "validation.json").write_text(json.dumps({"passed": True, "valid_md5": file_md5(validated)}))
    overrides = ["debug=fast", "trainer=ddp_cpu", "trainer.max_epochs=2", "data.in_memory_max_rows=0"]
    result = run([*TRAIN, *overrides, f"paths.validated={validated}", f"paths.reports={tmp_path}"], trained)
    assert "distributed_backend=gloo" in result.stdout + result.stderr, "not trained with DDP"
    metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    params = OmegaConf.load(trained / "params.yaml")
    held_out = validation_mask(0, table.num_rows, int(params.seed), float(params.data.val_fraction))
    assert metrics["train_rows"] == int((~held_out).sum()) and metrics["epochs"] == 2
    assert metrics["val_roc_auc"] > 0.6
