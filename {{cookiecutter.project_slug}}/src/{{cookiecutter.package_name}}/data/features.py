"""Row -> model inputs for the example data, and the slices reported on.

Only raw columns come in, so the same function serves training, evaluation
and serving; the fitted part (scaling, vocabularies) lives in the model
artifact (see `preprocessing.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from . import tabular
from .schema import MERCHANT_CATEGORIES, SLICE_COLUMN

NUMERIC_FEATURES: tuple[str, ...] = (
    "log_amount",
    "amount_to_avg",
    "hour_sin",
    "hour_cos",
    "night",
    "cross_border",
    "card_not_present",
    "txn_count_1h",
    "log_account_age",
    "log_distance",
)
CATEGORICAL_FEATURES: dict[str, tuple[str, ...]] = {"merchant_category": MERCHANT_CATEGORIES}


# The raw columns the features are computed from: what a caller must provide, as arrays.
RAW_COLUMNS: tuple[str, ...] = (
    "event_time",
    "amount",
    "amount_avg_30d",
    "card_country",
    "merchant_country",
    "card_present",
    "txn_count_1h",
    "account_age_days",
    "distance_from_home_km",
    *CATEGORICAL_FEATURES,
)


def numeric_features(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Raw column arrays -> float64 matrix (n_rows, len(NUMERIC_FEATURES)).

    The one feature definition: training and evaluation call it with a frame's columns,
    serving with a request's columns, so the two cannot skew. `event_time` is naive UTC
    (datetime64); the hour is taken from it without pandas.
    """
    event_time = np.asarray(columns["event_time"]).astype("datetime64[h]").astype(np.int64)
    hour = (event_time % 24).astype(np.float64)
    angle = 2 * np.pi * hour / 24
    log_amount = np.log1p(np.asarray(columns["amount"], dtype=np.float64))
    derived = (
        log_amount,
        log_amount - np.log1p(np.asarray(columns["amount_avg_30d"], dtype=np.float64)),
        np.sin(angle),
        np.cos(angle),
        (hour < 5).astype(np.float64),
        (np.asarray(columns["card_country"]) != np.asarray(columns["merchant_country"])).astype(np.float64),
        (~np.asarray(columns["card_present"], dtype=bool)).astype(np.float64),
        # log: a burst of 12 is far from a burst of 0, but 40 is not much worse than 20.
        np.log1p(np.minimum(np.asarray(columns["txn_count_1h"], dtype=np.float64), 50.0)),
        np.log1p(np.asarray(columns["account_age_days"], dtype=np.float64)),
        np.log1p(np.asarray(columns["distance_from_home_km"], dtype=np.float64)),
    )
    return np.stack(derived, axis=1)


def frame_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The raw columns of a frame as arrays, in the form `numeric_features` takes."""
    columns = {name: frame[name].to_numpy() for name in RAW_COLUMNS}
    columns["event_time"] = pd.to_datetime(frame["event_time"]).to_numpy(dtype="datetime64[ns]")
    return columns


def derive_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric features plus the raw categorical columns, one row per input row (for analysis)."""
    return tabular.feature_frame(frame, numeric_features(frame_columns(frame)), NUMERIC_FEATURES, CATEGORICAL_FEATURES)


def slice_masks(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Named boolean masks of the rows each per-slice metric is computed on."""
    masks = tabular.slice_masks(frame, SLICE_COLUMN)  # overall, and the golden set's curated slices
    masks["card_present"] = frame["card_present"].to_numpy(dtype=bool)
    masks["card_not_present"] = ~masks["card_present"]
    return masks
