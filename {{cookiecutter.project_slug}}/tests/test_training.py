"""Training: reproducible on CPU, resumable after a kill, clear errors for impossible requests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_workspace, run

from {{ cookiecutter.package_name }}.data.validation import file_md5
from {{ cookiecutter.package_name }}.training.artifact import load_model

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


def test_two_cpu_runs_are_bit_identical(trained: Path) -> None:
    run([sys.executable, "pipelines/train.py"], trained)
    first_weights, first_metrics = _weights_and_metrics(trained)
    run([sys.executable, "pipelines/train.py"], trained)
    second_weights, second_metrics = _weights_and_metrics(trained)
    assert first_metrics == second_metrics
    for name, tensor in first_weights.items():
        assert torch.equal(tensor, second_weights[name]), name


def test_a_killed_run_resumes_from_its_last_checkpoint(trained: Path) -> None:
    command = [*TRAIN, "trainer.max_epochs=12", "data.batch_size=256"]
    process = subprocess.Popen(
        command,
        cwd=trained,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **__import__("os").environ,
            "PYTHONPATH": str(trained / "src"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{trained / 'mlflow.db'}",
        },
    )
    last = trained / "models" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert last.exists(), "no checkpoint was written before the kill"
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert killed_at < 11, "the run finished before it could be killed"
    resumed = run([*command, "train.resume=true"], trained)
    assert "resuming from" in resumed.stdout + resumed.stderr
    epochs = json.loads((trained / "reports" / "train_metrics.json").read_text())["epochs"]
    assert epochs == 12
    first_epoch_line = next(line for line in resumed.stdout.splitlines() if line.startswith("epoch "))
    assert not first_epoch_line.startswith("epoch 1/"), "the resumed run started over"


def test_resume_without_a_checkpoint_says_so(trained: Path, tmp_path: Path) -> None:
    result = run([*TRAIN, "train.resume=true", f"paths.checkpoints={tmp_path / 'none'}"], trained, check=False)
    assert result.returncode == 2 and "no checkpoint" in result.stderr


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
