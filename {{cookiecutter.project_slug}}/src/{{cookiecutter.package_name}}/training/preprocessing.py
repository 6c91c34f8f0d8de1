"""The fitted part of preprocessing: scaling and one-hot vocabularies.

It is saved inside the model artifact, so training, evaluation and serving
turn rows into tensors with the same code and the same numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from ..data import CATEGORICAL_FEATURES, NUMERIC_FEATURES, derive_features


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    means: tuple[float, ...]
    stds: tuple[float, ...]
    vocabularies: dict[str, tuple[str, ...]]

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> Preprocessor:
        numeric = derive_features(frame)[list(NUMERIC_FEATURES)].to_numpy(dtype=np.float64)
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
        features = derive_features(frame)
        numeric = (features[list(NUMERIC_FEATURES)].to_numpy(dtype=np.float64) - self.means) / self.stds
        blocks = [numeric.astype(np.float32)]
        for column, vocabulary in self.vocabularies.items():
            codes = pd.Categorical(features[column], categories=list(vocabulary)).codes
            one_hot = np.zeros((len(frame), len(vocabulary)), dtype=np.float32)
            known = codes >= 0  # an unseen category gets all zeros rather than a wrong column
            one_hot[np.flatnonzero(known), codes[known]] = 1.0
            blocks.append(one_hot)
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
