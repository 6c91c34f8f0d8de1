"""The network and its Lightning training logic."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

from .network import build_network

__all__ = ["BinaryClassifier", "build_network"]

# What conf/model's `optimizer` and `scheduler` become: Hydra partials (`_partial_: true`).
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def check_arguments(hidden_sizes: Sequence[int], dropout: float, pos_weight: float) -> None:
    """The rules torch would only break on mid-run (or not at all), each naming its argument."""
    widths_ok = all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in hidden_sizes)
    if not hidden_sizes or not widths_ok:
        raise ValueError(f"hidden_sizes: a non-empty list of layer widths, each an integer >= 1; got {hidden_sizes}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(f"dropout: a probability, 0 <= dropout < 1; got {dropout!r}")
    if not isinstance(pos_weight, (int, float)) or isinstance(pos_weight, bool) or not pos_weight > 0:
        raise ValueError(f"pos_weight: a weight > 0; got {pos_weight!r}")


class BinaryClassifier(pl.LightningModule):
    """Binary classifier trained with BCE.

    `pos_weight` > 1 trades calibration for recall on the rare class; the default 1.0 keeps the
    probabilities calibrated (the gate checks the Brier score).
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (64, 32),
        dropout: float = 0.1,
        pos_weight: float = 1.0,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        check_arguments(hidden_sizes, dropout, pos_weight)
        # Kept in checkpoints (load_from_checkpoint rebuilds the model from them) but not sent to the logger:
        # the run's params are the composed config (tracking.mlflow_logger), each under one name. The optimizer
        # and scheduler are code, not values (conf/model chooses them): kept out, so checkpoints load weights-only.
        self.save_hyperparameters(logger=False, ignore=["optimizer", "scheduler"])
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.network = build_network(in_features, list(hidden_sizes), dropout)
        self.register_buffer("pos_weight", torch.tensor([pos_weight], dtype=torch.float32))
        self.val_auroc = BinaryAUROC()
        self.val_pr_auc = BinaryAveragePrecision()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network(features).squeeze(-1)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pos_weight: torch.Tensor = self.pos_weight  # type: ignore[assignment]  # a registered buffer
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels, pos_weight=pos_weight)

    def on_train_epoch_start(self) -> None:
        # The epoch's loss is summed on the device and logged once: a `self.log` per step costs
        # about as much as the step itself for a model this small (benchmarks/bench_train.py).
        self.loss_sum = torch.zeros((), device=self.device)
        self.rows_seen = 0

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        features, labels = batch
        loss = self._loss(self(features), labels)
        self.loss_sum += loss.detach() * len(labels)
        self.rows_seen += len(labels)
        if batch_idx == self.trainer.num_training_batches - 1:  # the epoch's last batch, before validation
            # on_epoch: sent to the logger at the epoch's end whatever log_every_n_steps says.
            epoch_loss = self.loss_sum / max(self.rows_seen, 1)
            self.log("train/loss", epoch_loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        features, labels = batch
        logits = self(features)
        probabilities = torch.sigmoid(logits.float())
        self.val_auroc.update(probabilities, labels.long())
        self.val_pr_auc.update(probabilities, labels.long())
        self.log("val/loss", self._loss(logits, labels), prog_bar=True, batch_size=len(labels), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log("val/roc_auc", self.val_auroc.compute(), prog_bar=True)
        self.log("val/pr_auc", self.val_pr_auc.compute(), prog_bar=True)
        self.val_auroc.reset()
        self.val_pr_auc.reset()

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError("optimizer: none given; a model loaded only to score cannot be trained")
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer)}}
