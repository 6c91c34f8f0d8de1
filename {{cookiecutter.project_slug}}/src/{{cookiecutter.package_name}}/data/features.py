"""Row -> model inputs for the example data, and the slices reported on.

Only raw columns come in, so the same function serves training, evaluation
and serving; the fitted part (scaling, vocabularies) lives in the model
artifact (see `preprocessing.py`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def derive_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric features plus the raw categorical columns, one row per input row."""
    hour = pd.to_datetime(frame["event_time"]).dt.hour.to_numpy()
    angle = 2 * np.pi * hour / 24
    amount = frame["amount"].to_numpy(dtype=np.float64)
    derived = {
        "log_amount": np.log1p(amount),
        "amount_to_avg": np.log1p(amount) - np.log1p(frame["amount_avg_30d"].to_numpy(dtype=np.float64)),
        "hour_sin": np.sin(angle),
        "hour_cos": np.cos(angle),
        "night": (hour < 5).astype(np.float64),
        "cross_border": (frame["card_country"].to_numpy() != frame["merchant_country"].to_numpy()).astype(np.float64),
        "card_not_present": (~frame["card_present"].to_numpy(dtype=bool)).astype(np.float64),
        # log: a burst of 12 is far from a burst of 0, but 40 is not much worse than 20.
        "txn_count_1h": np.log1p(np.minimum(frame["txn_count_1h"].to_numpy(dtype=np.float64), 50.0)),
        "log_account_age": np.log1p(frame["account_age_days"].to_numpy(dtype=np.float64)),
        "log_distance": np.log1p(frame["distance_from_home_km"].to_numpy(dtype=np.float64)),
    }
    features = pd.DataFrame(derived, index=frame.index)
    for column in CATEGORICAL_FEATURES:
        features[column] = frame[column].to_numpy()
    return features


def slice_masks(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Named boolean masks of the rows each per-slice metric is computed on."""
    masks: dict[str, np.ndarray] = {"overall": np.ones(len(frame), dtype=bool)}
    if SLICE_COLUMN in frame:
        for name in sorted(frame[SLICE_COLUMN].unique()):
            masks[f"slice={name}"] = (frame[SLICE_COLUMN] == name).to_numpy()
    masks["card_present"] = frame["card_present"].to_numpy(dtype=bool)
    masks["card_not_present"] = ~masks["card_present"]
    return masks
