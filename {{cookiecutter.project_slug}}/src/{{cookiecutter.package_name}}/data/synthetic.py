"""Valid, labelled rows drawn from the dataset's schema alone: what tests and demos run on, whatever the data.

Generic: it reads `RowSchema` and the roles, never a column name. Each column stays inside its schema's
checks (bounds, closed sets, string lengths, uniqueness); a nullable column gets a few missing values; the
label follows a fixed random linear score of the numeric columns, so a model can learn it (its AUC is well
above chance) and both classes are always present. No row of the project's own data is used, so nothing of
it can leak into a test or a log. A dataset with a source of its own (the example's generator) may use it
instead: `generate.py`'s `sample_rows` and `sample_golden` are what tests call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from .schema import ID_COLUMN, LABEL_COLUMN, SLICE_COLUMN, TIME_COLUMN, RowSchema

MISSING_SHARE = 0.02  # of a nullable column's values
POSITIVE_SHARE = 0.25  # roughly, of the labels
UNBOUNDED_SPREAD = 100.0  # the width drawn for a number the schema leaves open on a side


def _bounds(column: pa.Column) -> tuple[float | None, float | None, list[object] | None, int | None]:
    """(lowest, highest, allowed values, shortest length) that the column's checks allow."""
    low = high = allowed = shortest = None
    for check in column.checks:
        stats = check.statistics or {}
        if check.name in ("greater_than", "greater_than_or_equal_to"):
            low = stats.get("min_value")
        elif check.name in ("less_than", "less_than_or_equal_to"):
            high = stats.get("max_value")
        elif check.name == "isin":
            allowed = list(stats["allowed_values"])
        elif check.name == "str_length":
            shortest = stats.get("min_value")
    return low, high, allowed, shortest


def _numbers(rng: np.random.Generator, rows: int, low: float | None, high: float | None, whole: bool) -> np.ndarray:
    start = float(low) if low is not None else (float(high) - UNBOUNDED_SPREAD if high is not None else 0.0)
    stop = float(high) if high is not None else start + UNBOUNDED_SPREAD
    if whole:
        return rng.integers(int(np.ceil(start)), int(np.floor(stop)) + 1, rows, dtype=np.int64)
    # Strictly inside: a `greater_than` bound excludes its own value.
    return start + (stop - start) * rng.uniform(1e-6, 1 - 1e-6, rows)


def _times(rng: np.random.Generator, rows: int, low: object, high: object, as_of: str) -> pd.Series:
    end = pd.Timestamp(high) if high is not None else pd.Timestamp(as_of).tz_localize(None)
    start = pd.Timestamp(low) if low is not None else end - pd.Timedelta(days=365)
    start = max(start, end - pd.Timedelta(days=365))
    seconds = rng.integers(0, int((end - start).total_seconds()), rows)
    return pd.Series(start + pd.to_timedelta(np.sort(seconds), unit="s")).astype("datetime64[ns]")


def synthetic_rows(rows: int, seed: int = 0, as_of: str = "2026-01-01", id_prefix: str = "row") -> pd.DataFrame:
    """`rows` valid labelled rows of the dataset's schema; the same arguments give the same rows."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    signal = np.zeros(rows)
    for name, column in RowSchema.to_schema().columns.items():
        if name == LABEL_COLUMN:
            continue
        kind = str(column.dtype)
        low, high, allowed, shortest = _bounds(column)
        if name == ID_COLUMN:
            values: Any = np.array([f"{id_prefix}-{seed}-{i:09d}" for i in range(rows)], dtype=object)
        elif allowed is not None:
            values = np.asarray(allowed, dtype=object)[rng.integers(0, len(allowed), rows)]
            if kind in ("int64", "float64", "bool"):
                values = np.asarray(values).astype(kind)
        elif name == TIME_COLUMN or kind.startswith("datetime64"):
            values = _times(rng, rows, low, high, as_of)
        elif kind == "bool":
            values = rng.random(rows) < 0.5
        elif kind in ("int64", "float64"):
            values = _numbers(rng, rows, low, high, whole=kind == "int64")
            spread = np.std(values) or 1.0
            signal += rng.normal() * (values - np.mean(values)) / spread
        else:  # free text
            values = np.array([f"t{i % 97:0{max(int(shortest or 1), 2)}d}" for i in range(rows)], dtype=object)
        if column.nullable and kind == "float64":
            values = np.where(rng.random(rows) < MISSING_SHARE, np.nan, values)
        columns[name] = values
    frame = pd.DataFrame(columns)
    if not np.any(signal):
        signal = rng.normal(size=rows)
    spread = float(np.std(signal)) or 1.0
    logit = 2.5 * signal / spread + float(np.log(POSITIVE_SHARE / (1 - POSITIVE_SHARE)))
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    labels[:2] = (0, 1)  # both classes, whatever the draw
    frame[LABEL_COLUMN] = labels
    return frame


def synthetic_golden(rows: int, seed: int = 10_000, as_of: str = "2026-01-01") -> pd.DataFrame:
    """A golden set of `rows` synthetic rows, all in the one slice `sample` (seeds apart from training's)."""
    golden = synthetic_rows(rows, seed=seed, as_of=as_of, id_prefix="golden")
    golden[SLICE_COLUMN] = "sample"
    return golden
