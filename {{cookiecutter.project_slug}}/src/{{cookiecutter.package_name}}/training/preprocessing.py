"""The fitted part of preprocessing: scaling and one-hot vocabularies.

It is saved inside the model artifact, so training, evaluation and serving
turn rows into tensors with the same code and the same numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..data.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, frame_columns, numeric_features
from ..data.rows import COLUMN_TYPES
from ..data.schema import LABEL_COLUMN


def feature_signature() -> str:
    """What a model's inputs mean: the row's columns and types, the label, the feature layout (md5).

    Saved in every artifact. Two models with the same signature read the same rows the same way, so
    one can be scored by the other's feature code; another dataset or feature set gives another one.
    """
    layout = {
        "columns": COLUMN_TYPES,
        "label": LABEL_COLUMN,
        "numeric_features": list(NUMERIC_FEATURES),
        "categorical_features": {name: list(values) for name, values in CATEGORICAL_FEATURES.items()},
    }
    return hashlib.md5(json.dumps(layout, sort_keys=True).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    means: tuple[float, ...]
    stds: tuple[float, ...]
    vocabularies: dict[str, tuple[str, ...]]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Preprocessor:
        """Fit on rows held in memory: one batch of the streaming fit, so the two cannot differ."""
        return cls.fit_batches([frame])

    @classmethod
    def fit_batches(cls, frames: Iterable[pd.DataFrame]) -> Preprocessor:
        """Fit in one pass over batches of rows, holding one batch at a time."""
        moments = FeatureMoments()
        for frame in frames:
            moments.add(numeric_features(frame_columns(frame)))
        return cls.from_moments(moments)

    @classmethod
    def from_moments(cls, moments: FeatureMoments) -> Preprocessor:
        if moments.count == 0:
            raise ValueError("cannot fit the preprocessing on no rows")
        # The vocabularies come from the schema, not the data: a category absent from this data
        # version still gets its column, so the model's inputs do not change shape between versions.
        return cls(
            means=tuple(float(x) for x in moments.mean),
            stds=tuple(float(x) if x > 1e-12 else 1.0 for x in moments.std),
            vocabularies=cls.fit_layout()[1],
        )

    @staticmethod
    def fit_layout() -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
        """The numeric feature names and vocabularies a fit under the current feature code has."""
        return tuple(NUMERIC_FEATURES), {name: tuple(values) for name, values in CATEGORICAL_FEATURES.items()}

    @property
    def feature_names(self) -> list[str]:
        names = list(NUMERIC_FEATURES)
        for column, vocabulary in self.vocabularies.items():
            names += [f"{column}={value}" for value in vocabulary]
        return names

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows -> float32 matrix (n_rows, n_features)."""
        return self.transform_columns(frame_columns(frame))

    def transform_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Raw column arrays -> float32 matrix: the one path frames (training) and requests (serving) take."""
        numeric = (numeric_features(columns) - self.means) / self.stds
        blocks = [numeric.astype(np.float32)]
        for column, vocabulary in self.vocabularies.items():
            blocks.append(one_hot(np.asarray(columns[column]), vocabulary))
        return np.concatenate(blocks, axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "means": list(self.means),
            "stds": list(self.stds),
            "vocabularies": {k: list(v) for k, v in self.vocabularies.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        return cls(
            means=tuple(data["means"]),
            stds=tuple(data["stds"]),
            vocabularies={k: tuple(v) for k, v in data["vocabularies"].items()},
        )


class FeatureMoments:
    """Count, mean and sum of squared deviations per column, merged batch by batch.

    Chan et al.'s pairwise update: a batch's own moments are exact (numpy's mean and
    deviations), and merging two sets of moments loses no more than float64 rounding, so a
    streamed fit agrees with a fit on the whole table to ~1e-12 relative.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean = np.zeros(0)
        self.m2 = np.zeros(0)

    def add(self, matrix: np.ndarray) -> None:
        rows = len(matrix)
        if rows == 0:
            return
        mean = matrix.mean(axis=0)
        m2 = np.square(matrix - mean).sum(axis=0)
        if self.count == 0:
            self.count, self.mean, self.m2 = rows, mean, m2
            return
        total = self.count + rows
        delta = mean - self.mean
        self.mean = self.mean + delta * (rows / total)
        self.m2 = self.m2 + m2 + np.square(delta) * (self.count * rows / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof=0), as numpy's std."""
        return np.sqrt(self.m2 / self.count)


def one_hot(values: np.ndarray, vocabulary: tuple[str, ...]) -> np.ndarray:
    """float32 indicator matrix; an unseen category gets all zeros rather than a wrong column."""
    known = np.asarray(vocabulary, dtype=str)
    order = np.argsort(known)
    values = values.astype(str)
    position = np.minimum(np.searchsorted(known[order], values), len(known) - 1)
    codes = order[position]
    hit = known[codes] == values
    matrix = np.zeros((len(values), len(known)), dtype=np.float32)
    matrix[np.flatnonzero(hit), codes[hit]] = 1.0
    return matrix
