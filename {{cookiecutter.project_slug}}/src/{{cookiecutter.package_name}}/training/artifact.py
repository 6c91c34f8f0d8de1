"""The model artifact: network weights + fitted preprocessing + threshold + lineage, in one file.

Everything that turns a raw row into a score travels together, so evaluation,
the gate's champion comparison and the served model cannot skew from training.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import torch

from .network import build_network
from .preprocessing import Preprocessor, feature_signature

FORMAT_VERSION = 1


@dataclasses.dataclass
class ScoringModel:
    """A trained model that scores raw transaction rows."""

    network: torch.nn.Module
    preprocessor: Preprocessor
    threshold: float
    architecture: dict[str, Any]
    metadata: dict[str, Any]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Positive-class probability per row."""
        return self.score(self.preprocessor.transform(frame))

    def predict_proba_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Positive-class probability per row of raw column arrays: serving's path, no DataFrame."""
        return self.score(self.preprocessor.transform_columns(columns))

    def score(self, matrix: np.ndarray) -> np.ndarray:
        """Preprocessed float32 matrix -> probabilities (float64), without autograd bookkeeping."""
        features = torch.from_numpy(matrix)
        with torch.inference_mode():
            logits = self.network(features).squeeze(-1)
        return torch.sigmoid(logits).numpy().astype(np.float64)

    @property
    def signature(self) -> str | None:
        """The feature signature it was trained under (`preprocessing.feature_signature`).

        An artifact saved before signatures were recorded gets the current code's one when its fitted
        layout (numeric feature count, vocabularies) is the current code's, else None: not comparable.
        """
        recorded = self.metadata.get("feature_signature")
        if recorded is not None:
            return str(recorded)
        current = Preprocessor.fit_layout()
        same = len(self.preprocessor.means) == len(current[0]) and self.preprocessor.vocabularies == current[1]
        return feature_signature() if same else None

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """1 where the probability reaches the operating threshold."""
        return (self.predict_proba(frame) >= self.threshold).astype(np.int64)

    def state(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "state_dict": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "preprocessor": self.preprocessor.to_dict(),
            "threshold": self.threshold,
            "metadata": self.metadata,
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state(), path)


def load_model(source: str | Path | IO[bytes] | bytes) -> ScoringModel:
    """Load an artifact from a path, an open binary file or its bytes."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    state = torch.load(source, map_location="cpu", weights_only=True)
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported model artifact format {state.get('format_version')!r}")
    architecture = state["architecture"]
    network = build_network(architecture["in_features"], architecture["hidden_sizes"], architecture["dropout"])
    network.load_state_dict(state["state_dict"])
    network.eval()
    return ScoringModel(
        network=network,
        preprocessor=Preprocessor.from_dict(state["preprocessor"]),
        threshold=float(state["threshold"]),
        architecture=architecture,
        metadata=state["metadata"],
    )
