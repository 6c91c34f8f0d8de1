"""Training rows streamed from parquet: the same fit, every row once, a seeded order, memory bounded by a setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from {{ cookiecutter.package_name }}.data import LABEL_COLUMN, sample_rows
from {{ cookiecutter.package_name }}.data.features import frame_columns, numeric_features
from {{ cookiecutter.package_name }}.training.datamodule import (
    InMemoryDataModule,
    StreamingDataModule,
    build_datamodule,
)
from {{ cookiecutter.package_name }}.training.streaming import (
    ParquetRows,
    ShuffleBuffer,
    StreamedBatches,
    scan,
    validation_mask,
)

ROWS, GROUP_ROWS, SEED, VAL_FRACTION = 6_000, 700, 7, 0.2


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return sample_rows(ROWS, seed=11)


def row_keys(matrix: np.ndarray | torch.Tensor) -> np.ndarray:
    """Each row's bytes as one sortable value: rows compared whole and exactly, whatever the features are."""
    rows = np.ascontiguousarray(matrix.numpy() if isinstance(matrix, torch.Tensor) else matrix)
    return np.sort(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel())


@pytest.fixture(scope="module")
def parquet(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rows in many small row groups of uneven size, as a large file has many."""
    path = tmp_path_factory.mktemp("streaming") / "train.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=GROUP_ROWS)
    assert pq.ParquetFile(path).metadata.num_row_groups == -(-ROWS // GROUP_ROWS)
    return path


def _collect(batches: StreamedBatches) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    features, labels = [], []
    for x, y in batches:
        features.append(x)
        labels.append(y)
    return features, labels


def test_the_streamed_fit_equals_the_in_memory_fit(frame: pd.DataFrame, parquet: Path) -> None:
    streamed = StreamingDataModule(parquet, 64, VAL_FRACTION, SEED, buffer_rows=1024)
    in_memory = InMemoryDataModule(pd.read_parquet(parquet), 64, VAL_FRACTION, SEED)
    assert (streamed.train_rows, streamed.val_rows) == (in_memory.train_rows, in_memory.val_rows)
    assert streamed.train_rows + streamed.val_rows == ROWS
    assert streamed.train_positive_rate == in_memory.train_positive_rate
    np.testing.assert_allclose(streamed.preprocessor.means, in_memory.preprocessor.means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(streamed.preprocessor.stds, in_memory.preprocessor.stds, rtol=1e-10)
    assert streamed.preprocessor.vocabularies == in_memory.preprocessor.vocabularies
    # And the in-memory fit is today's: mean and population std of the training rows' features.
    train = frame[~validation_mask(0, ROWS, SEED, VAL_FRACTION)]
    reference = InMemoryDataModule(frame, 64, VAL_FRACTION, SEED).preprocessor
    features = numeric_features(frame_columns(train))
    np.testing.assert_allclose(reference.means, features.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        reference.stds, np.where(features.std(axis=0) > 1e-12, features.std(axis=0), 1.0), rtol=1e-12
    )
    pd.testing.assert_frame_equal(streamed.example(5), in_memory.example(5))


def test_the_split_is_per_row_and_about_the_fraction() -> None:
    whole = validation_mask(0, 100_000, SEED, VAL_FRACTION)
    pieces = np.concatenate([validation_mask(start, 999, SEED, VAL_FRACTION) for start in range(0, 100_000, 999)])
    assert np.array_equal(whole, pieces[: len(whole)])
    assert abs(whole.mean() - VAL_FRACTION) < 0.005
    assert not np.array_equal(whole, validation_mask(0, 100_000, SEED + 1, VAL_FRACTION))


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("validation", [False, True])
def test_every_row_is_seen_once_per_epoch_across_ranks(
    frame: pd.DataFrame, parquet: Path, world_size: int, validation: bool
) -> None:
    rows = ParquetRows(parquet, SEED, VAL_FRACTION)
    plan = scan(rows)
    held_out = validation_mask(0, ROWS, SEED, VAL_FRACTION)
    expected = row_keys(plan.preprocessor.transform(frame[held_out if validation else ~held_out]))
    seen, steps = [], set()
    for rank in range(world_size):
        batches = StreamedBatches(rows, plan, validation, 100, 1024, SEED, rank, world_size, current_epoch=lambda: 3)
        features, labels = _collect(batches)
        assert len(features) == len(batches)
        assert all(len(x) == len(y) > 0 for x, y in zip(features, labels, strict=True))
        steps.add(len(features))
        seen.append(row_keys(torch.cat(features)))
    assert len(steps) == 1, "every rank must take the same number of batches"
    assert np.array_equal(np.sort(np.concatenate(seen)), expected)  # each row once, across the ranks


def test_the_order_repeats_with_the_seed_and_changes_with_the_epoch(parquet: Path) -> None:
    rows = ParquetRows(parquet, SEED, VAL_FRACTION)
    plan = scan(rows)

    def epoch(number: int, seed: int = SEED) -> torch.Tensor:
        batches = StreamedBatches(rows, plan, False, 128, 1024, seed, current_epoch=lambda: number)
        features, labels = _collect(batches)
        return torch.cat([torch.cat(features), torch.cat(labels)[:, None]], dim=1)

    first = epoch(0)
    assert torch.equal(first, epoch(0))
    assert not torch.equal(first, epoch(1))
    assert not torch.equal(first, epoch(0, seed=SEED + 1))
    assert np.array_equal(row_keys(first), row_keys(epoch(1)))  # the same rows, in a new order


def test_memory_is_bounded_by_the_buffer_not_the_file(parquet: Path) -> None:
    rows = ParquetRows(parquet, SEED, VAL_FRACTION)
    plan = scan(rows)
    assert plan.train_rows > 4 * 512
    batches = StreamedBatches(rows, plan, False, 64, 512, SEED)
    assert sum(len(y) for _, y in batches) == plan.train_rows
    assert batches.buffer.capacity == 512
    assert batches.buffer.high_water == 512  # filled, never more


def test_the_shuffle_buffer_holds_at_most_its_capacity_whatever_comes_in() -> None:
    sizes = [50] * 20
    buffer = ShuffleBuffer(128, 1, sizes, np.random.default_rng(0))
    values = np.arange(1000, dtype=np.float32)
    out = []
    for start in range(0, 1000, 300):  # pushes larger than the buffer
        out += [y for _, y in buffer.push(values[start : start + 300, None], values[start : start + 300])]
    out += [y for _, y in buffer.drain()]
    assert buffer.high_water == 128
    assert [len(y) for y in out] == sizes
    assert np.array_equal(np.sort(torch.cat(out).numpy()), values)
    with pytest.raises(ValueError, match="too small"):
        ShuffleBuffer(99, 1, sizes, np.random.default_rng(0))


def test_the_size_setting_chooses_the_path(parquet: Path) -> None:
    assert isinstance(build_datamodule(parquet, 64, VAL_FRACTION, SEED, ROWS, 1024), InMemoryDataModule)
    assert isinstance(build_datamodule(parquet, 64, VAL_FRACTION, SEED, ROWS - 1, 1024), StreamingDataModule)


def test_a_buffer_smaller_than_two_batches_is_refused_before_reading(parquet: Path) -> None:
    with pytest.raises(ValueError, match="must hold at least two batches"):
        StreamingDataModule(parquet, 1024, VAL_FRACTION, SEED, buffer_rows=2047)


def test_too_few_row_groups_for_the_ranks_is_a_clear_error(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "one_group.parquet"
    frame.to_parquet(path)  # one row group
    rows = ParquetRows(path, SEED, VAL_FRACTION)
    with pytest.raises(ValueError, match="smaller row groups"):
        StreamedBatches(rows, scan(rows), False, 64, 1024, SEED, rank=0, world_size=2)


def test_a_split_without_both_classes_is_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "legit_only.parquet"
    frame.assign(**{LABEL_COLUMN: 0}).to_parquet(path)
    with pytest.raises(ValueError, match="one class only"):
        StreamingDataModule(path, 64, VAL_FRACTION, SEED, buffer_rows=1024)
