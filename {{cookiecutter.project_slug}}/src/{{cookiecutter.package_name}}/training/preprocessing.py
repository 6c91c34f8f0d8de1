"""The fitted part of preprocessing: scaling and one-hot vocabularies.

It is saved inside the model artifact, so training, evaluation and serving
turn rows into tensors with the same code and the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..data.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, frame_columns, numeric_features


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    means: tuple[float, ...]
    stds: tuple[float, ...]
    vocabularies: dict[str, tuple[str, ...]]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Preprocessor:
        numeric = numeric_features(frame_columns(frame))
        stds = numeric.std(axis=0)
        return cls(
            means=tuple(float(x) for x in numeric.mean(axis=0)),
            stds=tuple(float(x) if x > 1e-12 else 1.0 for x in stds),
            vocabularies={name: tuple(values) for name, values in CATEGORICAL_FEATURES.items()},
        )

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
