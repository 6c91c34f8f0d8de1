"""Whole-batch data path: the training set lives as tensors (on the GPU when there is one).

A per-sample DataLoader over a TensorDataset pays Python and collate costs for
every row; a tabular model trains many times faster when each step is one
index into tensors that are already on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch

from ..data import LABEL_COLUMN
from .preprocessing import Preprocessor


class ResidentBatches:
    """Yields (features, labels) slices of resident tensors; reshuffled each epoch, sharded per rank."""

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        current_epoch: Callable[[], int] = lambda: 0,
    ) -> None:
        self.features, self.labels = features, labels
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        # The shuffle depends on the trainer's epoch, so a resumed run sees the same order as an unbroken one.
        self.current_epoch = current_epoch
        # Every rank takes the same number of batches, so DDP collectives never wait on a missing one.
        self.rows_per_rank = len(labels) // world_size if world_size > 1 else len(labels)

    def __len__(self) -> int:
        return -(-self.rows_per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.features.device
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.current_epoch())
            order = torch.randperm(len(self.labels), generator=generator).to(device)
        else:
            order = torch.arange(len(self.labels), device=device)
        order = order[self.rank :: self.world_size][: self.rows_per_rank] if self.world_size > 1 else order
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.features[index], self.labels[index]


class TransactionsDataModule(pl.LightningDataModule):
    """Validated rows -> stratified train/val split -> fitted preprocessor -> resident tensors."""

    def __init__(self, frame: pd.DataFrame, batch_size: int, val_fraction: float, seed: int) -> None:
        super().__init__()
        if frame.empty:
            raise ValueError("the training set is empty: every row was quarantined or the file has no rows")
        if frame[LABEL_COLUMN].nunique() < 2:
            raise ValueError("the training set holds one class only; fraud and legitimate rows are both needed")
        self.batch_size, self.seed = batch_size, seed
        rng = np.random.default_rng(seed)
        is_val = np.zeros(len(frame), dtype=bool)
        for label in (0, 1):  # stratified, so the rare class is in both splits
            rows = np.flatnonzero(frame[LABEL_COLUMN].to_numpy() == label)
            is_val[rng.choice(rows, size=max(1, int(len(rows) * val_fraction)), replace=False)] = True
        train, val = frame[~is_val], frame[is_val]
        self.preprocessor = Preprocessor.fit(train)
        self.train_x, self.train_y = self._tensors(train)
        self.val_x, self.val_y = self._tensors(val)
        self.n_features = self.train_x.shape[1]
        self.rank, self.world_size = 0, 1

    def _tensors(self, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.from_numpy(self.preprocessor.transform(frame))
        labels = torch.from_numpy(frame[LABEL_COLUMN].to_numpy(dtype=np.float32))
        return features, labels

    def move_to(self, device: torch.device, rank: int = 0, world_size: int = 1) -> None:
        """Put the tensors on the training device once, before the first batch."""
        self.train_x, self.train_y = self.train_x.to(device), self.train_y.to(device)
        self.val_x, self.val_y = self.val_x.to(device), self.val_y.to(device)
        self.rank, self.world_size = rank, world_size

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> ResidentBatches:
        return ResidentBatches(
            self.train_x,
            self.train_y,
            self.batch_size,
            True,
            self.seed,
            self.rank,
            self.world_size,
            current_epoch=self._current_epoch,
        )

    def val_dataloader(self) -> ResidentBatches:
        return ResidentBatches(
            self.val_x, self.val_y, self.batch_size * 4, False, self.seed, self.rank, self.world_size
        )
