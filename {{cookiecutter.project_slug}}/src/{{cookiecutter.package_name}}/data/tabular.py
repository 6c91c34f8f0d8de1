"""Plain tabular features for a dataset without hand-written ones: what `tools/adopt_data.py` wires up.

Generic: a dataset's `features.py` names its columns and calls these. Numeric and boolean columns go in
as they are (the fitted scaling lives in the model artifact); a missing value becomes 0 plus a 1 in that
column's `<name>_missing` indicator, so a null is information, never an error or a silent fill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

MISSING_SUFFIX = "_missing"


def feature_names(numeric: Sequence[str], nullable: Sequence[str]) -> tuple[str, ...]:
    """The numeric feature names: each column, then a missing indicator per nullable column."""
    return (*numeric, *(f"{name}{MISSING_SUFFIX}" for name in nullable))


def numeric_block(columns: Mapping[str, np.ndarray], numeric: Sequence[str], nullable: Sequence[str]) -> np.ndarray:
    """Raw column arrays -> float64 matrix (n_rows, len(feature_names(numeric, nullable)))."""
    values = [np.asarray(columns[name], dtype=np.float64) for name in numeric]
    missing = [np.isnan(np.asarray(columns[name], dtype=np.float64)) for name in nullable]
    filled = [np.where(np.isnan(v), 0.0, v) for v in values]
    return np.stack([*filled, *(m.astype(np.float64) for m in missing)], axis=1)


def frame_columns(frame: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named columns of a frame as arrays (nullable numbers and booleans as float64 with NaN)."""
    columns = {}
    for name in names:
        series = frame[name]
        numeric = series.dtype.kind in "biuf" or str(series.dtype) in ("boolean", "Int64", "Float64")
        if numeric and series.isna().any():
            columns[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            columns[name] = series.to_numpy()
    return columns


def feature_frame(
    frame: pd.DataFrame, numeric: np.ndarray, numeric_names: Sequence[str], categorical: Mapping[str, object]
) -> pd.DataFrame:
    """Numeric features (a dataset's `numeric_features` of the frame) plus the raw categorical columns, one row per
    input row: what a dataset's `derive_features` returns, for analysis."""
    features = pd.DataFrame(numeric, columns=list(numeric_names), index=frame.index)
    for column in categorical:
        features[column] = frame[column].to_numpy()
    return features


def slice_masks(frame: pd.DataFrame, slice_column: str) -> dict[str, np.ndarray]:
    """Overall, and one mask per value of the golden set's slice column where the frame has it."""
    masks: dict[str, np.ndarray] = {"overall": np.ones(len(frame), dtype=bool)}
    if slice_column in frame:
        for name in sorted(frame[slice_column].unique()):
            masks[f"{slice_column}={name}"] = (frame[slice_column] == name).to_numpy()
    return masks
