"""train(cfg) -> metrics: the testable core of the `train` stage, read top to bottom.

Check the config, load the data, then fit and write the artifact. What makes a run resumable and
always closed (run identity, resume point, run directory, signals) is run_state.py; what the config
may ask for is build.py.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig, OmegaConf

from ..errors import TrainingError
from ..files import write_json, write_summary
from ..lineage import data_versions, record_lineage
from .artifact import ScoringModel
from .build import build_model, check_trainable, instantiated
from .datamodule import TabularDataModule, build_datamodule
from .model import BinaryClassifier
from .preprocessing import feature_signature
from .run_state import (
    LAST_CHECKPOINT,
    LastCheckpoint,
    closing_run,
    launched_as_rank_zero,
    open_run_directory,
    read_run_state,
    resume_point,
    run_identity,
    write_run_state,
)
from .tracking import log_training_run, mlflow_logger, start_run

log = logging.getLogger(__name__)
BEST_CHECKPOINT = "best"


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


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 on held-out rows: the operating point of the model."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    true_positives = np.cumsum(sorted_labels)
    predicted = np.arange(1, len(scores) + 1)
    f1 = 2 * true_positives / (predicted + max(sorted_labels.sum(), 1))
    return float(sorted_scores[int(np.argmax(f1))])


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
    # Seeded before the weights are drawn; built before anything is written, so a bad value deletes nothing.
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = build_model(cfg.model, datamodule.n_features)
    trainer = build_trainer(cfg)
    checkpoints, resume = Path(cfg.paths.checkpoints), bool(cfg.train.resume)
    identity = run_identity(cfg, validated)
    resume_from = resume_point(checkpoints, resume, identity)
    if not launched_as_rank_zero():
        return fit(cfg, trainer, model, datamodule, None, resume_from)
    # Everything above only reads; from here on the run writes checkpoints and MLflow records.
    previous = read_run_state(checkpoints) if resume else None
    run_id = start_run(cfg, {"resumed_from": previous["mlflow_run_id"]} if previous else {})
    with closing_run(run_id):
        open_run_directory(checkpoints, resume, {**identity, "mlflow_run_id": run_id, "finished": False})
        metrics = fit(cfg, trainer, model, datamodule, run_id, resume_from)
        write_run_state(checkpoints, {**identity, "mlflow_run_id": run_id, "finished": True})
    return metrics


def build_trainer(cfg: DictConfig) -> pl.Trainer:
    """The Trainer from conf/trainer, built before anything is written (Lightning checks its values here).

    The MLflow logger is attached by fit once the run exists.
    """
    checkpoints = Path(cfg.paths.checkpoints)
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    return instantiated(  # type: ignore[no-any-return]
        cfg.trainer,
        "trainer",
        logger=False,
        callbacks=[
            ResidentData(),
            EpochSummary(),
            ModelCheckpoint(dirpath=checkpoints, filename=BEST_CHECKPOINT, monitor="val/pr_auc", mode="max"),
            LastCheckpoint(checkpoints / LAST_CHECKPOINT),
        ],
        enable_progress_bar=interactive,
        enable_model_summary=interactive,
        default_root_dir=str(checkpoints),
    )


def fit(
    cfg: DictConfig,
    trainer: pl.Trainer,
    model: BinaryClassifier,
    datamodule: TabularDataModule,
    run_id: str | None,
    resume_from: str | None,
) -> dict[str, Any]:
    """Fit (or continue) the model, then write the artifact, the metrics and the MLflow record."""
    torch.set_float32_matmul_precision("high")
    if run_id is not None:
        trainer.logger = mlflow_logger(cfg, run_id, datamodule.n_features)
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return {}
    return finish(cfg, trainer, datamodule, train_seconds)


def finish(cfg: DictConfig, trainer: pl.Trainer, datamodule: TabularDataModule, train_seconds: float) -> dict[str, Any]:
    """The best epoch becomes the artifact; metrics count every epoch, throughput only this process's."""
    checkpoint, logger = trainer.checkpoint_callback, trainer.logger
    assert isinstance(checkpoint, ModelCheckpoint) and isinstance(logger, MLFlowLogger)  # build_trainer, fit
    first_epoch = next(c.first_epoch for c in trainer.callbacks if isinstance(c, EpochSummary))  # type: ignore[attr-defined]
    best = BinaryClassifier.load_from_checkpoint(checkpoint.best_model_path, map_location="cpu")
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
            "train_positive_rate": datamodule.train_positive_rate,
            "feature_signature": feature_signature(),
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
        OmegaConf.to_yaml(cfg),  # text, not cfg: tracking is entered with the config twice, not three times
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
