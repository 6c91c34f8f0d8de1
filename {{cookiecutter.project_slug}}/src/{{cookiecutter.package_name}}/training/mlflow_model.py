"""The model as an MLflow pyfunc: raw rows in, positive-class probabilities out.

The pyfunc ships with the code that scoring needs and nothing more (no training loop's
callers, no release, serving or deploy code): `scoring_code` stages exactly those modules.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# What turns a raw row into a score: the row schema and features, the fitted preprocessing,
# the network and the artifact that holds them, and this pyfunc.
SCORING_MODULES = (
    "__init__.py",
    "data/__init__.py",
    "data/schema.py",
    "data/rows.py",
    "data/tabular.py",
    "data/synthetic.py",
    "data/features.py",
    "data/generate.py",
    "training/__init__.py",
    "training/artifact.py",
    "training/network.py",
    "training/preprocessing.py",
    "training/mlflow_model.py",
)


def scoring_code(destination: Path) -> Path:
    """Copy the scoring modules into `destination/<package>/`; return that package folder."""
    target = destination / PACKAGE_DIR.name
    for relative in SCORING_MODULES:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGE_DIR / relative, target / relative)
    return target


class ScoringPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        from .artifact import load_model

        self.model = load_model(context.artifacts["model"])

    def predict(self, context, model_input, params=None) -> np.ndarray:  # type: ignore[no-untyped-def]
        return self.model.predict_proba(model_input)
