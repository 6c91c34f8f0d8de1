"""Drift of logged traffic against the training data: population stability index per feature and for the score.

PSI = sum((p_cur - p_ref) * ln(p_cur / p_ref)) over bins. Numeric features are binned at the
reference's quantiles (equal-mass bins, so the statistic weighs the whole range); categorical
ones use their categories, one bin each (a category unseen in training is a bin of its own).
The event time itself always moves on, so its hour of day stands in for it. Everything is
vectorised over whole columns.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.rows import COLUMN_TYPES, NULLABLE_COLUMNS
from ..data.schema import TIME_COLUMN
from .record import FEATURE_COLUMNS, LOG_GLOB, SCORE_COLUMN
from .record import TIME_COLUMN as LOGGED_AT

HOUR_FEATURE = "event_hour"
EPSILON = 1e-4  # floor for an empty bin's share: ln(0) would make any unseen value infinite drift
LOGGED_COLUMNS = (*FEATURE_COLUMNS, SCORE_COLUMN, LOGGED_AT)  # what a log line needs to be judged
NAMED_UNREADABLE = 20  # drift.json names this many unreadable lines; the count covers all of them


@dataclass(frozen=True)
class Limits:
    """conf/monitor: when a PSI counts as drift, and how much traffic a verdict needs."""

    psi: float
    score_psi: float
    bins: int
    min_rows: int


def monitored_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The model's inputs as the monitor compares them: the event time (if the data has one) as its hour of day."""
    features = {name: frame[name].to_numpy() for name in FEATURE_COLUMNS if name != TIME_COLUMN}
    if TIME_COLUMN is not None:
        features[HOUR_FEATURE] = pd.to_datetime(frame[TIME_COLUMN]).dt.hour.to_numpy()
    return features


def is_categorical(name: str) -> bool:
    return name == HOUR_FEATURE or COLUMN_TYPES[name] in ("object", "bool")


def _psi(reference_share: np.ndarray, current_share: np.ndarray) -> float:
    ref, cur = np.maximum(reference_share, EPSILON), np.maximum(current_share, EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def numeric_bins(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles of its present values; ties (counts, round values) merge bins."""
    present = reference.astype(float)
    present = present[~np.isnan(present)]
    if not len(present):
        return np.array([])
    return np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1]))


def numeric_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the values in each bin, then of the missing ones (a nullable column's nulls are a bin of their own,
    so a change in how often a value is missing is drift too)."""
    numbers = values.astype(float)
    missing = np.isnan(numbers)
    counts = np.bincount(np.searchsorted(edges, numbers[~missing], side="right"), minlength=len(edges) + 1)
    return np.append(counts, missing.sum()) / max(len(values), 1)


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
    unreadable: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The verdict as reports/drift.json holds it. Too little traffic gives no verdict (drift false, `enough` false),
    and so does a log with more unreadable lines than allowed (`unreadable.exceeded`)."""
    enough = len(traffic) >= limits.min_rows
    judged = enough and not (unreadable is not None and unreadable["exceeded"])
    features = feature_drift(reference, traffic, limits) if judged else {}
    score: dict[str, Any] | None = None
    if judged and reference_scores is not None:
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
        "unreadable": unreadable,
    }


def log_files(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob(LOG_GLOB))


@dataclass
class Unreadable:
    """Log lines skipped as unreadable (a killed writer's truncated line, a file that is not UTF-8 JSON lines):
    how many of how many, and the first NAMED_UNREADABLE of them by file and line number."""

    lines: int = 0
    read: int = 0  # every non-empty line of the files read, readable or not
    files: int = 0  # log files that could not be read at all: their share of the log is unknown
    named: list[dict[str, Any]] = field(default_factory=list)

    def add(self, path: Path, line: int, reason: str) -> None:
        self.lines += 1
        if len(self.named) < NAMED_UNREADABLE:
            self.named.append({"file": str(path), "line": line, "reason": reason})

    def add_file(self, path: Path, error: OSError) -> None:
        """A file that cannot be opened or read (a dangling link, a folder, no permission): named first."""
        self.files += 1
        self.named.insert(0, {"file": str(path), "line": None, "reason": f"cannot be read: {error.strerror or error}"})
        del self.named[NAMED_UNREADABLE:]

    @property
    def share(self) -> float:
        return self.lines / self.read if self.read else 0.0

    def as_dict(self, max_share: float) -> dict[str, Any]:
        """The record drift.json holds; `exceeded`: more than `max_share` of the lines read are unreadable, or a
        whole file is (how much of the log it holds is unknown)."""
        return {
            "lines": self.lines,
            "of": self.read,
            "files": self.files,
            "share": round(self.share, 6),
            "max_share": max_share,
            "exceeded": self.share > max_share or self.files > 0,
            "named": self.named,
        }


def skipped(record: dict[str, Any]) -> str:
    """What the reading skipped, from the drift.json record: one wording for the console and the HTML report."""
    whole = f"{record['files']} unreadable log files and " if record.get("files") else ""
    return f"skipped {whole}{record['lines']} unreadable of {record['of']} log lines"


def where(named: dict[str, Any]) -> str:
    """An unreadable line (file:line) or file as drift.json names it, with the reason."""
    place = named["file"] if named["line"] is None else f"{named['file']}:{named['line']}"
    return f"{place} ({named['reason']})"


def _usable(frame: pd.DataFrame) -> pd.Series:
    """Rows holding every logged column, non-null where the schema says so, with a timestamp that parses."""
    if any(name not in frame for name in LOGGED_COLUMNS):
        return pd.Series(False, index=frame.index)
    logged = pd.to_datetime(frame[LOGGED_AT], utc=True, format="ISO8601", errors="coerce")
    required = [name for name in LOGGED_COLUMNS if name not in NULLABLE_COLUMNS]  # a null the schema allows is data
    return frame[required].notna().all(axis=1) & logged.notna()


def _read_lines(path: Path, data: bytes, unreadable: Unreadable) -> pd.DataFrame:
    """A damaged file line by line: the readable rows; each unreadable line counted and named."""
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad.append((number, "not UTF-8"))
            continue
        except json.JSONDecodeError:
            bad.append((number, "not JSON: torn or garbled"))
            continue
        if isinstance(record, dict):
            records.append(record)
            numbers.append(number)
        else:
            bad.append((number, "not a JSON object"))
    unreadable.read += len(records) + len(bad)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=list(LOGGED_COLUMNS))
    usable = _usable(frame).to_numpy()
    bad += [(int(number), "a logged column is missing or empty") for number in np.asarray(numbers)[~usable]]
    for number, reason in sorted(bad):
        unreadable.add(path, number, reason)
    return frame[usable].reset_index(drop=True)


def read_log(path: Path, unreadable: Unreadable) -> pd.DataFrame:
    """One log file's readable rows. The whole file at C speed; line by line only when that fails."""
    data = path.read_bytes()
    try:
        frame = pd.read_json(io.BytesIO(data), lines=True, dtype=False)
        if _usable(frame).all():
            unreadable.read += len(frame)
            return frame
    except (ValueError, TypeError):  # not UTF-8 or not JSON (ValueError), lines of mixed kinds (TypeError)
        pass
    return _read_lines(path, data, unreadable)


def read_traffic(files: Iterable[Path], start: dt.datetime, end: dt.datetime) -> tuple[pd.DataFrame, Unreadable]:
    """The logged rows scored in [start, end) (aware UTC datetimes; an empty frame when there are none), and
    the lines skipped as unreadable in the files read. Only the window's rows of each file are kept."""
    unreadable, frames = Unreadable(), []
    for path in files:
        try:
            if not path.stat().st_size:
                continue
            frame = read_log(path, unreadable)
        except OSError as error:
            unreadable.add_file(path, error)
            continue
        logged = pd.to_datetime(frame[LOGGED_AT], utc=True, format="ISO8601")
        frames.append(frame[(logged >= start) & (logged < end)])
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame(columns=list(LOGGED_COLUMNS)), unreadable
    return pd.concat(frames, ignore_index=True), unreadable
