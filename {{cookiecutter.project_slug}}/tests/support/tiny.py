"""A small untrained scoring model: real feature code and network, built in well under a second."""

from __future__ import annotations

import pandas as pd
import torch

from {{ cookiecutter.package_name }}.training.artifact import ScoringModel, build_network
from {{ cookiecutter.package_name }}.training.preprocessing import Preprocessor


def tiny_model(transactions: pd.DataFrame) -> ScoringModel:
    torch.manual_seed(0)
    preprocessor = Preprocessor.fit(transactions)
    width = len(preprocessor.feature_names)
    network = build_network(width, [16], 0.0).eval()
    return ScoringModel(network, preprocessor, 0.5, {"in_features": width, "hidden_sizes": [16], "dropout": 0.0}, {})
