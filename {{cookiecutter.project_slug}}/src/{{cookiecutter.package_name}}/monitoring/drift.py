"""Drift of logged traffic against the training data: population stability index per feature and for the score.

PSI = sum((p_cur - p_ref) * ln(p_cur / p_ref)) over bins. Numeric features are binned at the
reference's quantiles (equal-mass bins, so the statistic weighs the whole range); categorical
ones use their categories, one bin each (a category unseen in training is a bin of its own).
The event time itself always moves on, so its hour of day stands in for it. Everything is
vectorised over whole columns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.schema import COLUMN_TYPES, TIME_COLUMN
from .record import FEATURE_COLUMNS, LOG_GLOB, SCORE_COLUMN
from .record import TIME_COLUMN as LOGGED_AT

HOUR_FEATURE = "event_hour"
EPSILON = 1e-4  # floor for an empty bin's share: ln(0) would make any unseen value infinite drift


@dataclass(frozen=True)
class Limits:
    """conf/monitor: when a PSI counts as drift, and how much traffic a verdict needs."""

    psi: float
    score_psi: float
    bins: int
    min_rows: int


def monitored_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The model's inputs as the monitor compares them: the event time as its hour of day."""
    features = {name: frame[name].to_numpy() for name in FEATURE_COLUMNS if name != TIME_COLUMN}
    features[HOUR_FEATURE] = pd.to_datetime(frame[TIME_COLUMN]).dt.hour.to_numpy()
    return features


def is_categorical(name: str) -> bool:
    return name == HOUR_FEATURE or COLUMN_TYPES[name] in ("object", "bool")


def _psi(reference_share: np.ndarray, current_share: np.ndarray) -> float:
    ref, cur = np.maximum(reference_share, EPSILON), np.maximum(current_share, EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def numeric_bins(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles; ties (counts, round amounts) merge bins."""
    return np.unique(np.quantile(reference.astype(float), np.linspace(0, 1, bins + 1)[1:-1]))


def numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values.astype(float), side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def categorical_shares(values: np.ndarray, categories: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(categories, values), minlength=len(categories))
    return counts / max(len(values), 1)


def psi_numeric(reference: np.ndarray, current: np.ndarray, bins: int) -> float:
    edges = numeric_bins(reference, bins)
    return _psi(numeric_shares(reference, edges), numeric_shares(current, edges))


def psi_categorical(reference: np.ndarray, current: np.ndarray) -> float:
    categories = np.unique(np.concatenate([reference, current]))
    return _psi(categorical_shares(reference, categories), categorical_shares(current, categories))


def feature_drift(reference: pd.DataFrame, traffic: pd.DataFrame, limits: Limits) -> dict[str, dict[str, Any]]:
    ref, cur = monitored_features(reference), monitored_features(traffic)
    result = {}
    for name in ref:
        categorical = is_categorical(name)
        value = (
            psi_categorical(ref[name].astype(str), cur[name].astype(str))
            if categorical
            else psi_numeric(ref[name], cur[name], limits.bins)
        )
        kind = "categorical" if categorical else "numeric"
        result[name] = {"kind": kind, "statistic": "psi", "value": round(value, 5), "limit": limits.psi}
        result[name]["drifted"] = value > limits.psi
    return result


def drift_report(
    reference: pd.DataFrame,
    traffic: pd.DataFrame,
    limits: Limits,
    reference_scores: np.ndarray | None = None,
    window: tuple[dt.datetime, dt.datetime] | None = None,
) -> dict[str, Any]:
    """The verdict as reports/drift.json holds it. Too little traffic gives no verdict (drift false, `enough` false)."""
    enough = len(traffic) >= limits.min_rows
    features = feature_drift(reference, traffic, limits) if enough else {}
    score: dict[str, Any] | None = None
    if enough and reference_scores is not None:
        value = psi_numeric(reference_scores, traffic[SCORE_COLUMN].to_numpy(dtype=float), limits.bins)
        score = {"statistic": "psi", "value": round(value, 5), "limit": limits.score_psi}
        score["drifted"] = value > limits.score_psi
    flagged = [name for name, found in features.items() if found["drifted"]]
    return {
        "drift": bool(flagged) or bool(score and score["drifted"]),
        "flagged": flagged,
        "score_drifted": bool(score and score["drifted"]),
        "enough_rows": enough,
        "rows": len(traffic),
        "reference_rows": len(reference),
        "window": {"start": window[0].isoformat(), "end": window[1].isoformat()} if window else None,
        "features": features,
        "score": score,
    }


def log_files(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob(LOG_GLOB))


def read_traffic(files: Iterable[Path], start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """The logged rows scored in [start, end) (aware UTC datetimes); an empty frame when there are none."""
    frames = [pd.read_json(path, lines=True, dtype=False) for path in files if path.stat().st_size]
    if not frames:
        return pd.DataFrame(columns=[*FEATURE_COLUMNS, SCORE_COLUMN, LOGGED_AT])
    traffic = pd.concat(frames, ignore_index=True)
    logged = pd.to_datetime(traffic[LOGGED_AT], utc=True, format="ISO8601")
    return traffic[(logged >= start) & (logged < end)].reset_index(drop=True)
