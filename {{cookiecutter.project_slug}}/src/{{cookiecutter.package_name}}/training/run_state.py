"""Run bookkeeping of the train stage: who a run is, where it may resume, and how it always ends.

A run records who it is (config and data) beside its checkpoints, so `train.resume=true` continues
only the very run that was interrupted; a run killed by a signal, an error or kill -9 never stays
RUNNING in MLflow. Fitting itself (train.py) knows none of this.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint
from omegaconf import DictConfig, OmegaConf

from ..errors import TrainingError
from ..files import write_atomically
from ..lineage import file_md5
from .tracking import close_stale_run, end_run

log = logging.getLogger(__name__)
LAST_CHECKPOINT = "last.ckpt"
RUN_STATE = "run.json"


class LastCheckpoint(Checkpoint):
    """`last.ckpt` after every epoch, replaced atomically, carrying the RNG state.

    Lightning's own `save_last` only writes when the monitored metric improved, so a killed
    run used to resume from its best epoch, not its last. Dropout draws from the global RNG:
    restoring it makes a resumed run end with the same weights as an unbroken one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            os.replace(partial, self.path)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])


def run_identity(cfg: DictConfig, validated: Path) -> dict[str, Any]:
    """What makes two runs the same run: every setting but `train.*`, and the exact training data."""
    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    config.pop("train", None)
    flat = {key: json.dumps(value, sort_keys=True) for key, value in _flatten(config).items()}
    return {"config": flat, "data_md5": file_md5(validated)}


def _flatten(tree: dict[Any, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_run_state(directory: Path) -> dict[str, Any] | None:
    path = directory / RUN_STATE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_run_state(directory: Path, state: dict[str, Any]) -> None:
    """Atomically, so a kill while writing leaves the previous state readable."""
    write_atomically(directory / RUN_STATE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def resume_point(directory: Path, resume: bool, identity: dict[str, Any]) -> str | None:
    """The checkpoint to continue from (None for a fresh run); refuses anything but the same, unfinished run."""
    if not resume:
        return None
    state, last = read_run_state(directory), directory / LAST_CHECKPOINT
    if state is None or not last.exists():
        stopped = "before its first epoch ended" if state is not None else "or it was written by an older version"
        raise TrainingError(
            f"train.resume=true but there is no checkpoint at {last} to resume from ({stopped}); "
            "train without train.resume"
        )
    if state.get("finished"):
        raise TrainingError(
            f"train.resume=true but the run in {directory} finished: there is nothing to continue; "
            "train without train.resume"
        )
    if state.get("data_md5") != identity["data_md5"]:
        raise TrainingError(f"cannot resume the run in {directory}: the training data changed since it started")
    old, new = state.get("config", {}), identity["config"]
    changed = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
    if changed:
        raise TrainingError(
            f"cannot resume the run in {directory}: its settings differ ({', '.join(changed[:8])}); "
            "resume with the same settings or train without train.resume"
        )
    return str(last)


def open_run_directory(directory: Path, resume: bool, state: dict[str, Any]) -> None:
    """Side effects of starting: close a run left RUNNING by a kill -9, clear a fresh run's directory."""
    previous = read_run_state(directory)
    if previous and previous.get("mlflow_run_id") and close_stale_run(previous["mlflow_run_id"]):
        log.info("marked MLflow run %s, left running by a killed process, as KILLED", previous["mlflow_run_id"])
    if resume:
        log.info("resuming from %s", directory / LAST_CHECKPOINT)
    elif directory.exists():
        shutil.rmtree(directory)
    write_run_state(directory, state)


@contextlib.contextmanager
def closing_run(run_id: str) -> Iterator[None]:
    """End the MLflow run FAILED on an error, KILLED on SIGTERM/SIGINT; never leave it RUNNING."""
    received: list[int] = []

    def interrupt(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    handled = (signal.SIGTERM, signal.SIGINT)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.signal(signum, interrupt) for signum in handled} if in_main_thread else {}
    try:
        yield
    except BaseException as error:
        killed = bool(received) or isinstance(error, KeyboardInterrupt)
        end_run(run_id, "KILLED" if killed else "FAILED")
        if received:  # the conventional exit status of a process ended by a signal
            raise SystemExit(128 + received[0]) from error
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    end_run(run_id, "FINISHED")


def launched_as_rank_zero() -> bool:
    """False in the extra processes Lightning's DDP launcher starts (it re-runs this script per device).

    Those train alongside rank zero but leave MLflow, the run directory and the artifact to it.
    """
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"
