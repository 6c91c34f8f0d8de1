"""Training rows read from parquet in row-group batches: memory follows a setting, not the file.

- The validation split is decided per row from its position in the file (`validation_mask`), so
  it needs no view of the whole table and the in-memory path takes the very same rows.
- The preprocessing is fitted in one pass over the file (`FeatureMoments`); batches are turned
  into tensors by the same `Preprocessor.transform` serving and evaluation use.
- Each rank owns a fixed, balanced share of the row groups. Every epoch it reads its groups in a
  seeded order and passes their rows through a shuffle buffer of at most `buffer_rows` rows.
  Every rank yields the same number of batches (DDP collectives never wait on a missing one) and
  every training row exactly once per epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from ..data import LABEL_COLUMN
from ..data.features import RAW_COLUMNS, frame_columns, numeric_features
from .preprocessing import FeatureMoments, Preprocessor

# Rows decoded from parquet at a time: the reader's share of memory, whatever the row groups' size.
READ_ROWS = 65_536
TRAINING_COLUMNS = (*RAW_COLUMNS, LABEL_COLUMN)
Batch = tuple[torch.Tensor, torch.Tensor]


def validation_mask(first_row: int, count: int, seed: int, fraction: float) -> np.ndarray:
    """Rows `first_row .. first_row+count-1` of the file: True where the row is held out for validation.

    A splitmix64 hash of (seed, row position) compared with `fraction`: the same rows whatever the
    batch boundaries, and about `fraction` of each class held out (the old split's stratification,
    in expectation).
    """
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        z = np.arange(first_row, first_row + count, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


@dataclasses.dataclass(frozen=True)
class RowGroup:
    """A row group of the file: where its rows start, and how many of them each split takes."""

    index: int
    first_row: int
    train_rows: int
    val_rows: int


class ParquetRows:
    """A parquet file read one row group, and within it READ_ROWS rows, at a time."""

    def __init__(self, path: Path, seed: int, val_fraction: float) -> None:
        self.path, self.seed, self.val_fraction = path, seed, val_fraction
        metadata = pq.ParquetFile(path).metadata
        self.rows = metadata.num_rows
        sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def batches(self, group: int, columns: Sequence[str] = TRAINING_COLUMNS) -> Iterator[tuple[int, pd.DataFrame]]:
        """(first row in the file, rows) of one row group, in order."""
        first = int(self.starts[group])
        for batch in pq.ParquetFile(self.path).iter_batches(READ_ROWS, row_groups=[group], columns=list(columns)):
            yield first, batch.to_pandas()
            first += batch.num_rows

    def split(self, group: int, validation: bool) -> Iterator[pd.DataFrame]:
        """The rows of one row group that fall in the training (or validation) split."""
        for first, frame in self.batches(group):
            held_out = validation_mask(first, len(frame), self.seed, self.val_fraction)
            yield frame[held_out if validation else ~held_out]

    def head(self, rows: int) -> pd.DataFrame:
        """The first rows with every column, as `pd.read_parquet(path).head(rows)` gives them."""
        batch = next(pq.ParquetFile(self.path).iter_batches(rows), None)
        return batch.to_pandas() if batch is not None else pd.read_parquet(self.path)


@dataclasses.dataclass(frozen=True)
class Scan:
    """What one pass over the file learns: the fitted preprocessing and the rows of each split per group."""

    preprocessor: Preprocessor
    groups: tuple[RowGroup, ...]
    train_positives: int
    val_positives: int

    @property
    def train_rows(self) -> int:
        return sum(group.train_rows for group in self.groups)

    @property
    def val_rows(self) -> int:
        return sum(group.val_rows for group in self.groups)


def scan(rows: ParquetRows) -> Scan:
    """One pass: moments of the training rows' features, split sizes and label counts per row group."""
    moments, groups, positives = FeatureMoments(), [], [0, 0]
    for group in range(len(rows.starts) - 1):
        split_rows = [0, 0]
        for first, frame in rows.batches(group):
            held_out = validation_mask(first, len(frame), rows.seed, rows.val_fraction)
            labels = frame[LABEL_COLUMN].to_numpy()
            moments.add(numeric_features(frame_columns(frame[~held_out])))
            for split, mask in enumerate((~held_out, held_out)):
                split_rows[split] += int(mask.sum())
                positives[split] += int(labels[mask].sum())
        groups.append(RowGroup(group, int(rows.starts[group]), split_rows[0], split_rows[1]))
    if moments.count == 0:
        raise ValueError("the training set is empty: every row was quarantined or the file has no rows")
    return Scan(Preprocessor.from_moments(moments), tuple(groups), positives[0], positives[1])


def assign_groups(sizes: Sequence[int], world_size: int) -> list[list[int]]:
    """Row groups per rank, balanced by rows: largest first, each to the rank with the fewest rows so far.

    Fixed for the whole run, so every epoch has the same number of batches per rank.
    """
    shares: list[list[int]] = [[] for _ in range(world_size)]
    loads = [0] * world_size
    for group in sorted(range(len(sizes)), key=lambda g: (-sizes[g], g)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        shares[rank].append(group)
        loads[rank] += sizes[group]
    return [sorted(share) for share in shares]


def batch_sizes(rows: int, steps: int) -> list[int]:
    """`rows` cut into `steps` batches whose sizes differ by at most one."""
    return [rows // steps + (1 if step < rows % steps else 0) for step in range(steps)]


class ShuffleBuffer:
    """Rows in, batches of planned sizes out, never more than `capacity` rows held.

    When full, the buffer is permuted and batches are cut from the front until half of it is
    left to mix with the rows that come next; at the end what remains is permuted and emptied.
    Unshuffled (validation), rows leave in the order they came.
    """

    def __init__(self, capacity: int, width: int, sizes: Sequence[int], generator: np.random.Generator | None) -> None:
        # Shuffled, a full buffer must give at least one batch and keep half; in order, hold one batch.
        needed = max(sizes, default=0) * (2 if generator is not None else 1)
        if capacity < needed:
            raise ValueError(
                f"a buffer of {capacity} rows is too small for batches of {max(sizes)} rows (needs {needed})"
            )
        self.features = np.empty((capacity, width), dtype=np.float32)
        self.labels = np.empty(capacity, dtype=np.float32)
        self.held, self.high_water = 0, 0
        self.sizes, self.next_size = list(sizes), 0
        self.generator = generator

    @property
    def capacity(self) -> int:
        return len(self.labels)

    def push(self, features: np.ndarray, labels: np.ndarray) -> Iterator[Batch]:
        start = 0
        while start < len(labels):
            take = min(self.capacity - self.held, len(labels) - start)
            self.features[self.held : self.held + take] = features[start : start + take]
            self.labels[self.held : self.held + take] = labels[start : start + take]
            self.held += take
            self.high_water = max(self.high_water, self.held)
            start += take
            if self.generator is None:
                yield from self._emit(keep=0, final=False)
            elif self.held == self.capacity:
                yield from self._emit(keep=self.capacity // 2, final=False)

    def drain(self) -> Iterator[Batch]:
        yield from self._emit(keep=0, final=True)
        if self.held or self.next_size < len(self.sizes):
            raise RuntimeError(f"the batch plan does not add up: {self.held} rows left over")

    def _emit(self, keep: int, final: bool) -> Iterator[Batch]:
        """Batches from the buffer while more than `keep` rows would stay (every row when `final`)."""
        order = self.generator.permutation(self.held) if self.generator is not None else np.arange(self.held)
        used = 0
        while self.next_size < len(self.sizes):
            size = self.sizes[self.next_size]
            if self.held - used - size < keep or (not final and used + size > self.held):
                break
            index = order[used : used + size]
            yield torch.from_numpy(self.features[index]), torch.from_numpy(self.labels[index])
            used += size
            self.next_size += 1
        rest = order[used:]
        self.features[: len(rest)] = self.features[rest]
        self.labels[: len(rest)] = self.labels[rest]
        self.held = len(rest)


class StreamedBatches:
    """(features, labels) batches of one split, read row group by row group; reshuffled each epoch when training."""

    def __init__(
        self,
        rows: ParquetRows,
        plan: Scan,
        validation: bool,
        batch_size: int,
        buffer_rows: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        current_epoch: Callable[[], int] = lambda: 0,
    ) -> None:
        self.rows, self.preprocessor, self.validation = rows, plan.preprocessor, validation
        self.buffer_rows, self.seed, self.rank = buffer_rows, seed, rank
        self.current_epoch = current_epoch
        sizes = [group.val_rows if validation else group.train_rows for group in plan.groups]
        shares = assign_groups(sizes, world_size)
        loads = [sum(sizes[group] for group in share) for share in shares]
        self.steps = max(-(-load // batch_size) for load in loads)
        if min(loads) < self.steps:
            raise ValueError(
                f"{len(sizes)} row group(s) cannot give {world_size} ranks {self.steps} batches each "
                f"(rows per rank: {loads}); write the file with smaller row groups or train in memory"
            )
        self.groups = [plan.groups[group] for group in shares[rank]]
        self.sizes = batch_sizes(loads[rank], self.steps)
        self.width = len(self.preprocessor.feature_names)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Batch]:
        groups = [group.index for group in self.groups]
        generator = None
        if not self.validation:
            epoch = self.current_epoch()
            # The group order is the same on every rank's view of its share; the buffer differs per rank.
            groups = [groups[i] for i in np.random.default_rng([self.seed, epoch]).permutation(len(groups))]
            generator = np.random.default_rng([self.seed, epoch, self.rank])
        # Validation keeps the file's order: it holds one batch at a time, whatever the shuffle buffer's size.
        capacity = max(self.sizes) if self.validation else self.buffer_rows
        buffer = ShuffleBuffer(capacity, self.width, self.sizes, generator)
        self.buffer = buffer  # kept for inspection: its high-water mark is the memory bound tests check
        for group in groups:
            for frame in self.rows.split(group, self.validation):
                features = self.preprocessor.transform(frame)
                yield from buffer.push(features, frame[LABEL_COLUMN].to_numpy(dtype=np.float32))
        yield from buffer.drain()
