"""Model tests: preprocessing travels in the artifact, the artifact round-trips, the threshold search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from {{ cookiecutter.package_name }}.training.artifact import ScoringModel, load_model
from {{ cookiecutter.package_name }}.training.model import build_network
from {{ cookiecutter.package_name }}.training.preprocessing import Preprocessor
from {{ cookiecutter.package_name }}.training.train import best_f1_threshold


@pytest.fixture(scope="module")
def model(transactions: pd.DataFrame) -> ScoringModel:
    torch.manual_seed(0)
    preprocessor = Preprocessor.fit(transactions)
    network = build_network(len(preprocessor.feature_names), [16], 0.0).eval()
    return ScoringModel(
        network,
        preprocessor,
        0.5,
        {"in_features": len(preprocessor.feature_names), "hidden_sizes": [16], "dropout": 0.0},
        {"note": "test"},
    )


def test_preprocessor_scales_and_encodes(transactions: pd.DataFrame) -> None:
    preprocessor = Preprocessor.fit(transactions)
    matrix = preprocessor.transform(transactions)
    assert matrix.shape == (len(transactions), len(preprocessor.feature_names))
    assert matrix.dtype == np.float32
    numeric, one_hot = matrix[:, : len(preprocessor.means)], matrix[:, len(preprocessor.means) :]
    varying = np.asarray(preprocessor.stds) != 1.0  # a constant feature keeps a unit scale
    assert np.allclose(numeric.mean(axis=0), 0, atol=1e-5)
    assert np.allclose(numeric.std(axis=0)[varying], 1, atol=1e-3)
    assert np.allclose(one_hot.sum(axis=1), len(preprocessor.vocabularies))  # one column per closed set


@pytest.mark.example  # the example's layout: 10 numeric features, then merchant_category one-hot
def test_unseen_category_scores_without_a_wrong_column(transactions: pd.DataFrame) -> None:
    preprocessor = Preprocessor.fit(transactions)
    rows = transactions.head(3).assign(merchant_category="casino")
    assert np.allclose(preprocessor.transform(rows)[:, 10:], 0.0)


def test_artifact_round_trip_keeps_scores(model: ScoringModel, transactions: pd.DataFrame, tmp_path: Path) -> None:
    model.save(tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    np.testing.assert_array_equal(loaded.predict_proba(transactions), model.predict_proba(transactions))
    assert loaded.preprocessor == model.preprocessor and loaded.metadata == {"note": "test"}
    assert load_model((tmp_path / "model.pt").read_bytes()).threshold == 0.5


def test_best_f1_threshold_separates_a_clean_split() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert best_f1_threshold(labels, scores) == 0.8
