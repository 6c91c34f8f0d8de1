"""train(cfg) -> metrics: the testable core of the `train` stage.

Everything the config asks for is checked before anything is written: a bad key or a
missing GPU leaves the checkpoints and the MLflow store as they were. A run records
who it is (config and data) beside its checkpoints, so `train.resume=true` continues
only the very run that was interrupted, and every MLflow run ends with a status.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from ..errors import PipelineError
from ..files import write_atomically, write_json, write_summary
from ..lineage import data_versions, file_md5, record_lineage
from .artifact import ScoringModel
from .datamodule import TabularDataModule, build_datamodule
from .model import FraudClassifier
from .tracking import close_stale_run, end_run, log_training_run, mlflow_logger, start_run

log = logging.getLogger(__name__)
BEST_CHECKPOINT = "best"
LAST_CHECKPOINT = "last.ckpt"
RUN_STATE = "run.json"
# Trainer arguments the stage sets itself; a config value for them would be silently overridden.
STAGE_TRAINER_ARGUMENTS = ("logger", "callbacks", "enable_progress_bar", "enable_model_summary", "default_root_dir")


class TrainingError(PipelineError):
    pass


class ResidentData(Callback):
    """Move the training tensors to the model's device once, before the first batch."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        if isinstance(datamodule, TabularDataModule):
            datamodule.move_to(pl_module.device, trainer.global_rank, trainer.world_size)


class EpochSummary(Callback):
    """One line per epoch: readable in CI logs where a progress bar is noise."""

    first_epoch = 0  # where this process started: after a resume, not every epoch ran here

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.first_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the epoch's validation, so train and val figures are of the same epoch.
        if not trainer.is_global_zero or not hasattr(self, "started"):
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if not k.endswith("_step")}
        shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        seconds = time.perf_counter() - self.started
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {shown}  ({seconds:.1f}s)", flush=True)


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


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """A clear message instead of a deep stack trace when the config asks for hardware that is not here."""
    if str(trainer_cfg.get("accelerator", "cpu")) not in ("gpu", "cuda"):
        return
    if not torch.cuda.is_available():
        raise TrainingError(
            "this config asks for a GPU (trainer.accelerator=gpu) but none is visible to torch "
            "(torch.cuda.is_available() is False). Train on CPU with `dvc exp run -S trainer=cpu` "
            "or run on a machine with a CUDA GPU and a CUDA build of torch."
        )
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int) and devices > torch.cuda.device_count():
        raise TrainingError(f"trainer.devices={devices} but only {torch.cuda.device_count()} GPU(s) are visible")


def _target_parameters(node: DictConfig, name: str) -> tuple[set[str], bool]:
    """The keyword arguments the `_target_` of a config group accepts, and whether it takes any (**kwargs)."""
    target = str(node.get("_target_", ""))
    module_name, _, attribute = target.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise TrainingError(f"{name}._target_={target!r} cannot be imported: {error}") from error
    parameters = inspect.signature(factory).parameters.values()
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return {p.name for p in parameters}, accepts_any


def _check_arguments(node: DictConfig, name: str, set_by_stage: tuple[str, ...]) -> None:
    accepted, accepts_any = _target_parameters(node, name)
    keys = {str(key) for key in node if not str(key).startswith("_")}
    unknown = sorted(keys - accepted) if not accepts_any else []
    if unknown:
        close = {match for key in unknown for match in difflib.get_close_matches(key, accepted, n=1)}
        hint = f"did you mean {', '.join(sorted(close))}?" if close else f"see the arguments of {node._target_}"
        raise TrainingError(f"unknown {name} setting(s) {', '.join(f'{name}.{k}' for k in unknown)}: {hint}")
    clashing = sorted(keys & set(set_by_stage))
    if clashing:
        raise TrainingError(f"{', '.join(f'{name}.{k}' for k in clashing)} is set by the train stage itself")


def check_trainable(cfg: DictConfig) -> None:
    """Refuse, before any side effect, what this machine or these classes cannot run."""
    for group in ("trainer", "model"):
        if not isinstance(cfg.get(group), DictConfig):
            raise TrainingError(
                f"{group}={cfg.get(group)!r} is not a composed config: compose a group choice into params.yaml "
                f"first (`python tools/params.py {group}={cfg.get(group)}` or `dvc exp run -S {group}=...`)"
            )
    _check_arguments(cfg.trainer, "trainer", STAGE_TRAINER_ARGUMENTS)
    _check_arguments(cfg.model, "model", ("in_features",))
    check_accelerator(cfg.trainer)


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 on held-out rows: the operating point of the model."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    true_positives = np.cumsum(sorted_labels)
    predicted = np.arange(1, len(scores) + 1)
    f1 = 2 * true_positives / (predicted + max(sorted_labels.sum(), 1))
    return float(sorted_scores[int(np.argmax(f1))])


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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train on the validated data, save the artifact and metrics, record the run in MLflow."""
    check_trainable(cfg)
    validated = Path(cfg.paths.validated)
    if not validated.exists():
        raise TrainingError(f"{validated} not found: run the validate stage first (`dvc repro validate`)")
    try:
        datamodule = build_datamodule(
            validated,
            int(cfg.data.batch_size),
            float(cfg.data.val_fraction),
            int(cfg.seed),
            int(cfg.data.in_memory_max_rows),
            int(cfg.data.shuffle_buffer_rows),
        )
    except ValueError as error:
        raise TrainingError(str(error)) from error
    checkpoints, resume = Path(cfg.paths.checkpoints), bool(cfg.train.resume)
    identity = run_identity(cfg, validated)
    resume_from = resume_point(checkpoints, resume, identity)
    if not launched_as_rank_zero():
        return fit(cfg, datamodule, None, resume_from)
    # Everything above only reads; from here on the run writes checkpoints and MLflow records.
    previous = read_run_state(checkpoints) if resume else None
    run_id = start_run(cfg, {"resumed_from": previous["mlflow_run_id"]} if previous else {})
    with closing_run(run_id):
        open_run_directory(checkpoints, resume, {**identity, "mlflow_run_id": run_id, "finished": False})
        metrics = fit(cfg, datamodule, run_id, resume_from)
        write_run_state(checkpoints, {**identity, "mlflow_run_id": run_id, "finished": True})
    return metrics


def fit(
    cfg: DictConfig,
    datamodule: TabularDataModule,
    run_id: str | None,
    resume_from: str | None,
) -> dict[str, Any]:
    """Fit (or continue) the model, then write the artifact, the metrics and the MLflow record."""
    from hydra.utils import instantiate

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    # _convert_="all": plain lists in the hyperparameters, so checkpoints load with weights_only=True.
    model: FraudClassifier = instantiate(cfg.model, in_features=datamodule.n_features, _convert_="all")
    checkpoints = Path(cfg.paths.checkpoints)
    checkpoint = ModelCheckpoint(dirpath=checkpoints, filename=BEST_CHECKPOINT, monitor="val/pr_auc", mode="max")
    summary = EpochSummary()
    logger = mlflow_logger(cfg, run_id, datamodule.n_features) if run_id is not None else False
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=[ResidentData(), summary, checkpoint, LastCheckpoint(checkpoints / LAST_CHECKPOINT)],
        enable_progress_bar=interactive,
        enable_model_summary=interactive,
        default_root_dir=str(checkpoints),
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return {}
    return finish(cfg, trainer, checkpoint, datamodule, logger, train_seconds, summary.first_epoch)


def finish(
    cfg: DictConfig,
    trainer: pl.Trainer,
    checkpoint: ModelCheckpoint,
    datamodule: TabularDataModule,
    logger: Any,
    train_seconds: float,
    first_epoch: int,
) -> dict[str, Any]:
    """The best epoch becomes the artifact; metrics count every epoch, throughput only this process's."""
    best = FraudClassifier.load_from_checkpoint(checkpoint.best_model_path, map_location="cpu")
    network = best.network.eval()
    val_labels, val_frame_scores = datamodule.validation_scores(network)
    artifact = ScoringModel(
        network=network,
        preprocessor=datamodule.preprocessor,
        threshold=best_f1_threshold(val_labels, val_frame_scores),
        architecture={
            "in_features": datamodule.n_features,
            "hidden_sizes": list(cfg.model.hidden_sizes),
            "dropout": float(cfg.model.dropout),
        },
        # Only what follows from code, data and params: the bytes of model.pt are reproducible, so
        # `dvc repro -f` changes nothing downstream. Run id, commit, time and environment are lineage,
        # recorded in the MLflow run (found again by the model's md5, see registry.training_run).
        metadata={
            "data": data_versions({"raw": cfg.paths.raw, "validated": cfg.paths.validated}),
            "train_rows": datamodule.train_rows,
            "val_rows": datamodule.val_rows,
            "train_fraud_rate": datamodule.train_fraud_rate,
        },
    )
    artifact.save(cfg.paths.model)
    metrics = {
        "val_roc_auc": float(trainer.callback_metrics["val/roc_auc"]),
        "val_pr_auc": float(trainer.callback_metrics["val/pr_auc"]),
        "val_loss": float(trainer.callback_metrics["val/loss"]),
        "best_val_pr_auc": float(checkpoint.best_model_score or 0.0),
        "threshold": artifact.threshold,
        "epochs": int(trainer.current_epoch),
        "train_rows": datamodule.train_rows,
    }
    reports = Path(cfg.paths.reports)
    reports.mkdir(parents=True, exist_ok=True)
    write_json(reports / "train_metrics.json", metrics)
    headline = ("val_roc_auc", "val_pr_auc", "val_loss", "epochs", "threshold")
    write_summary(Path(cfg.paths.metrics) / "train.json", {key: metrics[key] for key in headline})
    epochs_run = trainer.current_epoch - first_epoch
    samples_per_second = datamodule.train_rows * epochs_run / train_seconds
    log_training_run(
        logger,
        cfg,
        artifact,
        Path(cfg.paths.model),
        datamodule.example(5),
        {**metrics, "epochs_run": epochs_run, "train_seconds": train_seconds, "samples_per_second": samples_per_second},
    )
    if logger.run_id is not None:
        record_lineage(logger.run_id, Path(cfg.paths.model))
    print(
        f"trained {epochs_run} epochs ({first_epoch + 1}-{metrics['epochs']}) in {train_seconds:.1f}s "
        f"({samples_per_second:,.0f} samples/s); "
        f"val roc_auc={metrics['val_roc_auc']:.4f} pr_auc={metrics['val_pr_auc']:.4f}; saved {cfg.paths.model}"
    )
    return metrics
