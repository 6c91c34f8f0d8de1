"""The train stage's data: resident tensors for a file that fits, row-group streaming for one that does not.

A per-sample DataLoader over a TensorDataset pays Python and collate costs for
every row; a tabular model trains many times faster when each step is one
index into tensors that are already on the device. That is the path for files
up to `data.in_memory_max_rows` rows; a larger file streams (see `streaming.py`),
with the same split, the same fitted preprocessing and the same transform.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from ..data import LABEL_COLUMN
from .preprocessing import Preprocessor
from .streaming import ParquetRows, StreamedBatches, scan, validation_mask


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


def check_split(train_rows: int, train_positives: int, val_rows: int, val_positives: int) -> None:
    """Refuse a split that cannot train or be validated, with the reason."""
    if train_rows == 0:
        raise ValueError("the training set is empty: every row was quarantined or the file has no rows")
    if train_positives in (0, train_rows):
        raise ValueError("the training set holds one class only; positive and negative rows are both needed")
    if val_positives in (0, val_rows):
        raise ValueError(
            f"the validation split ({val_rows} rows) holds one class only: too few rows for data.val_fraction"
        )


class TabularDataModule(pl.LightningDataModule):
    """What the train stage reads of its data, however the rows are held."""

    preprocessor: Preprocessor
    train_rows: int
    val_rows: int
    train_positive_rate: float

    def __init__(self, batch_size: int, seed: int) -> None:
        super().__init__()
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = 0, 1

    @property
    def n_features(self) -> int:
        return len(self.preprocessor.feature_names)

    def move_to(self, device: torch.device, rank: int = 0, world_size: int = 1) -> None:
        """Called once before the first batch with the training device and this process's rank."""
        self.rank, self.world_size = rank, world_size

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def validation_scores(self, network: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """(labels, scores) of every validation row, on CPU: what the decision threshold is chosen on."""
        raise NotImplementedError

    def example(self, rows: int) -> pd.DataFrame:
        """The file's first rows with every column: the input example logged with the model."""
        raise NotImplementedError


def _score(
    network: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[np.ndarray, np.ndarray]:
    labels, scores = [], []
    with torch.inference_mode():
        for features, batch_labels in batches:
            labels.append(batch_labels.cpu().numpy())
            scores.append(torch.sigmoid(network(features.cpu()).squeeze(-1)).numpy())
    return np.concatenate(labels), np.concatenate(scores)


class InMemoryDataModule(TabularDataModule):
    """Validated rows in memory -> train/val split -> fitted preprocessor -> resident tensors."""

    def __init__(self, frame: pd.DataFrame, batch_size: int, val_fraction: float, seed: int) -> None:
        super().__init__(batch_size, seed)
        is_val = validation_mask(0, len(frame), seed, val_fraction)
        labels = frame[LABEL_COLUMN].to_numpy()
        train_positives = int(labels[~is_val].sum())
        check_split(int((~is_val).sum()), train_positives, int(is_val.sum()), int(labels[is_val].sum()))
        train, val = frame[~is_val], frame[is_val]
        self.preprocessor = Preprocessor.fit(train)
        self.train_x, self.train_y = self._tensors(train)
        self.val_x, self.val_y = self._tensors(val)
        self.train_rows, self.val_rows = len(train), len(val)
        self.train_positive_rate = train_positives / len(train)
        self.head = frame.head(5)

    def _tensors(self, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.from_numpy(self.preprocessor.transform(frame))
        labels = torch.from_numpy(frame[LABEL_COLUMN].to_numpy(dtype=np.float32))
        return features, labels

    def move_to(self, device: torch.device, rank: int = 0, world_size: int = 1) -> None:
        """Put the tensors on the training device once, before the first batch."""
        self.train_x, self.train_y = self.train_x.to(device), self.train_y.to(device)
        self.val_x, self.val_y = self.val_x.to(device), self.val_y.to(device)
        super().move_to(device, rank, world_size)

    def validation_scores(self, network: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
        return _score(network, [(self.val_x, self.val_y)])

    def example(self, rows: int) -> pd.DataFrame:
        return self.head.head(rows)

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


class StreamingDataModule(TabularDataModule):
    """Validated rows streamed from parquet: one pass to fit, then row-group batches through a shuffle buffer."""

    def __init__(self, path: Path, batch_size: int, val_fraction: float, seed: int, buffer_rows: int) -> None:
        super().__init__(batch_size, seed)
        if buffer_rows < 2 * batch_size:  # refused before the pass over the file, not at the first batch
            raise ValueError(
                f"data.shuffle_buffer_rows={buffer_rows} must hold at least two batches "
                f"(2 x data.batch_size = {2 * batch_size})"
            )
        self.rows = ParquetRows(path, seed, val_fraction)
        self.plan = scan(self.rows)
        check_split(self.plan.train_rows, self.plan.train_positives, self.plan.val_rows, self.plan.val_positives)
        self.preprocessor, self.buffer_rows = self.plan.preprocessor, buffer_rows
        self.train_rows, self.val_rows = self.plan.train_rows, self.plan.val_rows
        self.train_positive_rate = self.plan.train_positives / self.plan.train_rows

    def _batches(self, validation: bool, rank: int, world_size: int) -> StreamedBatches:
        batch_size = self.batch_size * 4 if validation else self.batch_size
        return StreamedBatches(
            self.rows,
            self.plan,
            validation,
            batch_size,
            self.buffer_rows,
            self.seed,
            rank,
            world_size,
            current_epoch=self._current_epoch,
        )

    def train_dataloader(self) -> StreamedBatches:
        return self._batches(False, self.rank, self.world_size)

    def val_dataloader(self) -> StreamedBatches:
        return self._batches(True, self.rank, self.world_size)

    def validation_scores(self, network: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
        return _score(network, self._batches(True, 0, 1))

    def example(self, rows: int) -> pd.DataFrame:
        return self.rows.head(rows)


def build_datamodule(
    path: Path, batch_size: int, val_fraction: float, seed: int, in_memory_max_rows: int, buffer_rows: int
) -> TabularDataModule:
    """In memory up to `in_memory_max_rows` rows (faster: features computed once), streamed beyond."""
    if pq.ParquetFile(path).metadata.num_rows <= in_memory_max_rows:
        return InMemoryDataModule(pd.read_parquet(path), batch_size, val_fraction, seed)
    return StreamingDataModule(path, batch_size, val_fraction, seed, buffer_rows)
