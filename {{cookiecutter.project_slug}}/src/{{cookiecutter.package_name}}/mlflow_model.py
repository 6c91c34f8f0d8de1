"""The model as an MLflow pyfunc: raw rows in, fraud probabilities out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mlflow.pyfunc import PythonModel


def package_dir() -> Path:
    return Path(__file__).resolve().parent


class FraudPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        from .artifact import load_model

        self.model = load_model(context.artifacts["model"])

    def predict(self, context, model_input, params=None) -> np.ndarray:  # type: ignore[no-untyped-def]
        return self.model.predict_proba(model_input)
