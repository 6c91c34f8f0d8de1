"""The gate: thresholds, champion regression with a paired bootstrap, fail-closed inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT
from omegaconf import OmegaConf

from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.release.gate import (
    GateConfigError,
    _read_json,
    champion_checks,
    paired_bootstrap,
    regression_check,
    threshold_checks,
)

GATE = OmegaConf.load(PROJECT / "params.yaml").gate


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = (rng.random(4000) < 0.05).astype(int)
    scores = np.clip(labels * 0.35 + rng.normal(0.3, 0.15, 4000), 0, 1)
    return labels, scores


def test_thresholds_pass_and_fail() -> None:
    checks = threshold_checks({"roc_auc": 0.9, "pr_auc": 0.1, "brier": 0.01}, GATE.thresholds)
    result = {c.name: c.passed for c in checks}
    assert result == {"threshold_roc_auc_min": True, "threshold_pr_auc_min": False, "threshold_brier_max": True}


def test_nan_metric_fails_closed() -> None:
    checks = threshold_checks({"roc_auc": math.nan, "pr_auc": 0.9, "brier": 0.01}, GATE.thresholds)
    assert not next(c for c in checks if c.name == "threshold_roc_auc_min").passed


def test_unknown_metric_in_thresholds_is_an_error() -> None:
    with pytest.raises(GateConfigError, match="'f7_score'"):
        threshold_checks({"roc_auc": 0.9}, OmegaConf.create({"f7_score": {"min": 0.5}}))


def test_equal_candidate_is_not_a_regression(scored: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = scored
    check = regression_check("r", labels, scores, scores.copy(), "pr_auc", 0.0, 0.95, 200)
    assert check.passed and check.observed == 0.0


def test_noise_is_not_a_regression(scored: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = scored
    jittered = scores + np.random.default_rng(1).normal(0, 1e-3, len(scores))
    assert regression_check("r", labels, jittered, scores, "roc_auc", 0.01, 0.95, 200).passed


def test_a_clearly_worse_candidate_is_a_regression(scored: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = scored
    worse = np.clip(scores + np.random.default_rng(2).normal(0, 0.3, len(scores)), 0, 1)
    point, _low, high = paired_bootstrap(labels, worse, scores, "roc_auc", 200, 0.95)
    assert point < 0 and high < 0
    assert not regression_check("r", labels, worse, scores, "roc_auc", 0.01, 0.95, 200).passed


def test_slices_are_judged_too(scored: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = scored
    first_half = np.arange(len(labels)) < 2000
    worse = scores.copy()
    worse[first_half] = np.random.default_rng(3).random(2000)  # ruined on one slice only
    checks = champion_checks(GATE, labels, {"overall": np.ones_like(first_half), "slice=a": first_half}, worse, scores)
    assert not next(c for c in checks if c.name.endswith("[slice=a]")).passed


def test_missing_or_broken_metrics_fail_closed(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="not found"):
        _read_json(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text("{broken")
    with pytest.raises(PipelineError, match="not valid JSON"):
        _read_json(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text(json.dumps({"latency": {}}))
    with pytest.raises(PipelineError, match="no 'overall'"):
        _read_json(tmp_path / "metrics.json")
