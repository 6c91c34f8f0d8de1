"""train(cfg) -> metrics: the testable core of the `train` stage."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig

from ..errors import PipelineError
from ..lineage import data_versions, record_lineage
from .artifact import ScoringModel
from .datamodule import TransactionsDataModule
from .model import FraudClassifier
from .tracking import log_training_run, mlflow_logger

log = logging.getLogger(__name__)
BEST_CHECKPOINT = "best"


class TrainingError(PipelineError):
    pass


class ResidentData(Callback):
    """Move the training tensors to the model's device once, before the first batch."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        if isinstance(datamodule, TransactionsDataModule):
            datamodule.move_to(pl_module.device, trainer.global_rank, trainer.world_size)


class EpochSummary(Callback):
    """One line per epoch: readable in CI logs where a progress bar is noise."""

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


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 on held-out rows: the operating point of the model."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    true_positives = np.cumsum(sorted_labels)
    predicted = np.arange(1, len(scores) + 1)
    f1 = 2 * true_positives / (predicted + max(sorted_labels.sum(), 1))
    return float(sorted_scores[int(np.argmax(f1))])


def prepare_checkpoints(directory: Path, resume: bool) -> str | None:
    """The checkpoint to resume from, or None after clearing stale ones for a fresh run."""
    last = directory / "last.ckpt"
    if resume:
        if not last.exists():
            raise TrainingError(f"train.resume=true but there is no checkpoint at {last} to resume from")
        log.info("resuming from %s", last)
        return str(last)
    if directory.exists():
        shutil.rmtree(directory)
    return None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train on the validated data, save the artifact and metrics, record the run in MLflow."""
    check_accelerator(cfg.trainer)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    validated = Path(cfg.paths.validated)
    if not validated.exists():
        raise TrainingError(f"{validated} not found: run the validate stage first (`dvc repro validate`)")
    frame = pd.read_parquet(validated)
    try:
        datamodule = TransactionsDataModule(
            frame, int(cfg.data.batch_size), float(cfg.data.val_fraction), int(cfg.seed)
        )
    except ValueError as error:
        raise TrainingError(str(error)) from error
    # _convert_="all": plain lists in the hyperparameters, so checkpoints load with weights_only=True.
    model: FraudClassifier = instantiate(cfg.model, in_features=datamodule.n_features, _convert_="all")
    checkpoints = Path(cfg.paths.checkpoints)
    resume_from = prepare_checkpoints(checkpoints, bool(cfg.train.resume))
    checkpoint = ModelCheckpoint(
        dirpath=checkpoints, filename=BEST_CHECKPOINT, monitor="val/pr_auc", mode="max", save_last=True
    )
    logger = mlflow_logger(cfg)
    interactive = sys.stderr.isatty() and not os.environ.get("CI")
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        logger=logger,
        callbacks=[ResidentData(), EpochSummary(), checkpoint],
        enable_progress_bar=interactive,
        enable_model_summary=interactive,
        default_root_dir=str(checkpoints),
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return {}

    best = FraudClassifier.load_from_checkpoint(checkpoint.best_model_path, map_location="cpu")
    network = best.network.eval()
    val_frame_scores = _scores(network, datamodule.val_x.cpu())
    val_labels = datamodule.val_y.cpu().numpy()
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
            "train_rows": len(datamodule.train_y),
            "val_rows": len(datamodule.val_y),
            "train_fraud_rate": float(datamodule.train_y.mean()),
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
        "train_rows": len(datamodule.train_y),
    }
    reports = Path(cfg.paths.reports)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    samples_per_second = len(datamodule.train_y) * max(trainer.current_epoch, 1) / train_seconds
    log_training_run(
        logger,
        cfg,
        artifact,
        Path(cfg.paths.model),
        frame.head(5),
        {**metrics, "train_seconds": train_seconds, "samples_per_second": samples_per_second},
    )
    if logger.run_id is not None:
        record_lineage(logger.run_id, Path(cfg.paths.model))
    print(
        f"trained {metrics['epochs']} epochs in {train_seconds:.1f}s ({samples_per_second:,.0f} samples/s); "
        f"val roc_auc={metrics['val_roc_auc']:.4f} pr_auc={metrics['val_pr_auc']:.4f}; saved {cfg.paths.model}"
    )
    return metrics


def _scores(network: torch.nn.Module, features: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(network(features).squeeze(-1)).numpy()
