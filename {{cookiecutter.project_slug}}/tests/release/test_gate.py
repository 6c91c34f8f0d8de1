"""The gate: thresholds, non-inferiority to the champion (paired bootstrap), latency, behaviour, fail-closed inputs."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import PROJECT
from omegaconf import DictConfig, OmegaConf
from sklearn import metrics as skm

from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.evaluation.behaviour import behavioural_checks
from {{ cookiecutter.package_name }}.release import gate as gate_module
from {{ cookiecutter.package_name }}.release.champion import ChampionError, from_git
from {{ cookiecutter.package_name }}.release.gate import (
    Check,
    GateConfigError,
    Scored,
    _read_json,
    behavioural_gate_checks,
    champion_checks,
    latency_check,
    metric_value,
    non_inferiority_check,
    paired_bootstrap,
    run_gate,
    slice_coverage,
    threshold_checks,
)

PARAMS = OmegaConf.load(PROJECT / "params.yaml")
GATE, DATASET = PARAMS.gate, PARAMS.dataset


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = (rng.random(4000) < 0.05).astype(int)
    scores = np.clip(labels * 0.35 + rng.normal(0.3, 0.15, 4000), 0, 1)
    return labels, scores


def test_thresholds_pass_and_fail() -> None:
    thresholds = OmegaConf.create({"roc_auc": {"min": 0.75}, "pr_auc": {"min": 0.15}, "brier": {"max": 0.05}})
    checks = threshold_checks({"roc_auc": 0.9, "pr_auc": 0.1, "brier": 0.01}, thresholds)
    result = {c.name: c.passed for c in checks}
    assert result == {"threshold_roc_auc_min": True, "threshold_pr_auc_min": False, "threshold_brier_max": True}


def test_nan_metric_fails_closed() -> None:
    checks = threshold_checks({"roc_auc": math.nan, "pr_auc": 0.9, "brier_skill": 0.5}, DATASET.thresholds)
    assert not next(c for c in checks if c.name == "threshold_roc_auc_min").passed


def test_unknown_metric_in_thresholds_is_an_error() -> None:
    with pytest.raises(GateConfigError, match="'f7_score'"):
        threshold_checks({"roc_auc": 0.9}, OmegaConf.create({"f7_score": {"min": 0.5}}))


def check(labels: np.ndarray, candidate: np.ndarray, champion: np.ndarray, metric: str, tolerance: float) -> Check:
    new, old = Scored(labels, candidate, 0.5), Scored(labels, champion, 0.5)
    return non_inferiority_check("r", new, old, metric, tolerance, GATE.regression)


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc"])
def test_vectorised_metrics_equal_sklearn_on_the_unresampled_rows(
    scored: tuple[np.ndarray, np.ndarray], metric: str
) -> None:
    labels, scores = scored
    tied = np.round(scores, 2)  # ties are where rank-based shortcuts usually go wrong
    reference = {"roc_auc": skm.roc_auc_score, "pr_auc": skm.average_precision_score}[metric]
    for values in (scores, tied):
        assert metric_value(metric, labels, values) == pytest.approx(reference(labels, values), abs=1e-9)


def test_resampled_metrics_equal_sklearn_on_the_resampled_rows(scored: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = scored
    rows = np.random.default_rng(5).integers(0, len(labels), len(labels))
    weights = np.bincount(rows, minlength=len(labels))[None, :].astype(float)
    model = Scored(labels, np.round(scores, 2), 0.5)
    assert model.metric("roc_auc", weights)[0] == pytest.approx(skm.roc_auc_score(labels[rows], model.scores[rows]))
    expected_ap = skm.average_precision_score(labels[rows], model.scores[rows])
    assert model.metric("pr_auc", weights)[0] == pytest.approx(expected_ap)


def test_equal_candidate_is_not_a_regression(scored: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = scored
    result = check(labels, scores, scores.copy(), "pr_auc", 0.0)
    assert result.passed and result.observed == 0.0


def test_noise_is_not_a_regression(scored: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = scored
    jittered = scores + np.random.default_rng(1).normal(0, 1e-3, len(scores))
    assert check(labels, jittered, scores, "roc_auc", 0.01).passed


def test_a_clearly_worse_candidate_is_a_regression(scored: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = scored
    worse = np.clip(scores + np.random.default_rng(2).normal(0, 0.3, len(scores)), 0, 1)
    result = check(labels, worse, scores, "roc_auc", 0.01)
    assert not result.passed and result.observed < -0.01


def test_the_point_estimate_is_the_paired_difference() -> None:
    """Hand-computed: the candidate ranks 3 of the 4 (fraud, legit) pairs right (AUC 0.75), the champion all 4."""
    labels = np.array([0, 0, 1, 1])
    candidate, champion = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0.1, 0.2, 0.6, 0.8])
    point, _ = paired_bootstrap(Scored(labels, candidate, 0.5), Scored(labels, champion, 0.5), "roc_auc", 10)
    assert point == pytest.approx(-0.25, abs=1e-12)


@pytest.mark.parametrize(("tolerance", "passed"), [(0.09, False), (0.091, True)])
def test_a_drop_the_golden_set_cannot_rule_out_fails(
    monkeypatch: pytest.MonkeyPatch, tolerance: float, passed: bool
) -> None:
    """Non-inferiority: the point estimate (-0.005) is well inside the tolerance, the verdict follows the lower bound.

    Resampled differences -0.10, -0.09, ..., 0.09: the 5% quantile (linear) is -0.10 + 0.95 * 0.01 = -0.0905.
    """
    monkeypatch.setattr(gate_module, "paired_bootstrap", lambda *_: (-0.005, np.arange(-10, 10) / 100))
    labels = np.array([0, 1])
    regression = OmegaConf.merge(GATE.regression, {"confidence": 0.95, "n_bootstrap": 20})
    assert isinstance(regression, DictConfig)
    scored = Scored(labels, np.array([0.2, 0.7]), 0.5)
    result = non_inferiority_check("r", scored, scored, "roc_auc", tolerance, regression)
    assert result.observed == -0.0905 and result.limit == -tolerance
    assert result.passed is passed


SLICES: dict[str, dict[str, float]] = {name: {"roc_auc": 0.9} for name in DATASET.slices}
DROPPED_SLICE = str(DATASET.slices[-1])
METRICS = {"overall": {"roc_auc": 0.9}, "slices": SLICES}


def test_every_curated_slice_must_reach_the_gate() -> None:
    assert slice_coverage(METRICS, list(DATASET.slices)).passed
    dropped = {**METRICS, "slices": {k: v for k, v in SLICES.items() if k != DROPPED_SLICE}}
    result = slice_coverage(dropped, list(DATASET.slices))
    assert not result.passed and DROPPED_SLICE in result.detail
    assert (result.observed, result.limit) == (len(DATASET.slices) - 1, len(DATASET.slices))


def test_the_gate_fails_when_evaluation_dropped_a_curated_slice(tmp_path: Path) -> None:
    """run_gate on a metrics.json without one curated slice, no champion: the gate fails and says which slice."""
    for name in ("model.pt", "golden.parquet"):
        (tmp_path / name).write_bytes(b"stand-in")
    metrics = {
        "overall": {"roc_auc": 0.9, "pr_auc": 0.5, "brier": 0.01, "brier_skill": 0.5},
        "threshold": 0.5,
        "slices": {k: v for k, v in SLICES.items() if k != DROPPED_SLICE},
        "latency": {"ms_single_row_p99": 1.0},
        "behavioural": {"b": {"kind": "invariance", "observed": 0.0, "detail": "d"}},
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    paths = {"reports": str(tmp_path), "model": str(tmp_path / "model.pt"), "golden": str(tmp_path / "golden.parquet")}
    gate = OmegaConf.merge(GATE, {"champion": {"source": "none"}})
    report = run_gate(OmegaConf.create({"paths": paths, "gate": gate, "dataset": DATASET}))
    failed = [check["name"] for check in report["checks"] if not check["passed"]]
    assert failed == ["slice_coverage"] and not report["passed"]
    assert DROPPED_SLICE in check_detail(report, "slice_coverage")


def check_detail(report: dict, name: str) -> str:
    return str(next(check["detail"] for check in report["checks"] if check["name"] == name))


def test_lower_is_better_metrics_count_an_increase_as_a_drop() -> None:
    labels = np.zeros(1000, dtype=int)
    champion = np.full(1000, 0.1)
    more_false_alarms = np.where(np.arange(1000) < 100, 0.9, 0.1)  # FPR 0 -> 0.1
    result = check(labels, more_false_alarms, champion, "false_positive_rate", 0.02)
    assert not result.passed and result.observed == pytest.approx(-0.1, abs=0.03)


def test_every_slice_gets_a_verdict_by_the_metric_it_has(scored: tuple[np.ndarray, np.ndarray]) -> None:
    labels, scores = scored
    rows = np.arange(len(labels))
    slices = {
        "overall": np.ones(len(labels), dtype=bool),
        "slice=a": rows < 2000,
        "all_fraud": labels == 1,
        "all_legit": labels == 0,
        "tiny": rows < 50,
    }
    worse = scores.copy()
    worse[rows < 2000] = np.random.default_rng(3).random(2000)  # ruined on one slice only
    checks = {c.name: c for c in champion_checks(GATE, labels, slices, (worse, 0.5), (scores, 0.5))}
    assert not checks["no_regression_roc_auc[slice=a]"].passed
    assert "no_regression_recall[all_fraud]" in checks
    assert "no_regression_false_positive_rate[all_legit]" in checks
    tiny = checks["no_regression[tiny]"]
    assert not tiny.judged and tiny.passed and "not judged" in tiny.detail
    strict = OmegaConf.merge(GATE, {"regression": {"unjudged_slice_fails": True}})
    assert isinstance(strict, DictConfig)
    strict_checks = {c.name: c for c in champion_checks(strict, labels, slices, (scores, 0.5), (scores, 0.5))}
    assert not strict_checks["no_regression[tiny]"].passed


def test_latency_is_judged_on_the_single_row_p99() -> None:
    fast = latency_check({"ms_single_row_p99": 1.0, "ms_per_row_batch": 99.0}, GATE)
    slow = latency_check({"ms_single_row_p99": 10_000.0, "ms_per_row_batch": 0.001}, GATE)
    missing = latency_check({"ms_per_row_batch": 0.001}, GATE)
    assert fast.passed and not slow.passed and not missing.passed


def test_an_unstable_model_fails_the_invariance_checks(golden: pd.DataFrame) -> None:
    read, ignored = golden.select_dtypes("float").columns[:2]

    def jumpy(frame: pd.DataFrame) -> np.ndarray:  # flips on the hundredths of one column
        return (np.floor(frame[read].to_numpy() * 100) % 2).astype(float)

    declared = {
        "invariance": [
            {"name": "nudge_read", "set": {read: {"multiply": 1.01}}, "detail": "d"},
            {"name": "nudge_ignored", "set": {ignored: {"multiply": 1.01}}, "detail": "d"},
        ]
    }
    results = {r.name: r.as_dict() for r in behavioural_checks(jumpy, golden, 0.5, declared)}
    checks = {c.name: c for c in behavioural_gate_checks(results, GATE.behavioural)}
    assert not checks["behaviour_nudge_read"].passed
    assert checks["behaviour_nudge_ignored"].passed  # it never reads that column


def test_a_champion_on_another_feature_set_is_reported_and_not_compared() -> None:
    from {{ cookiecutter.package_name }}.release.champion import Champion
    from {{ cookiecutter.package_name }}.training.preprocessing import feature_signature

    def champion(signature: str | None) -> Champion:
        return Champion("git", "main@abc", "git", lambda frame: np.zeros(len(frame)), 0.5, "md5", signature)

    same = gate_module.comparability_check(champion(feature_signature()))
    assert same.judged and same.passed
    for other in ("0" * 32, None):
        check = gate_module.comparability_check(champion(other))
        assert check.passed and not check.judged, check
        assert "another dataset or feature set" in check.detail


def test_missing_or_broken_metrics_fail_closed(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="not found"):
        _read_json(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text("{broken")
    with pytest.raises(PipelineError, match="not valid JSON"):
        _read_json(tmp_path / "metrics.json")
    (tmp_path / "metrics.json").write_text(json.dumps({"latency": {}}))
    with pytest.raises(PipelineError, match="no 'overall'"):
        _read_json(tmp_path / "metrics.json")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """An empty git repository as the working directory; the returned function commits files to it."""
    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main"], check=True)

    def commit(**files: str) -> None:
        for name, text in files.items():
            (tmp_path / name).write_text(text)
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "c"], check=True)

    return commit


def lock(md5: str, path: str = "models/model.pt") -> str:
    return yaml.safe_dump({"schema": "2.0", "stages": {"train": {"cmd": "x", "outs": [{"path": path, "md5": md5}]}}})


def test_no_commit_or_no_lock_at_the_rev_is_a_first_release(repo: Callable[..., None]) -> None:
    assert from_git("models/model.pt", "main", "a" * 32) is None
    repo(**{"README.md": "x"})
    assert from_git("models/model.pt", "main", "a" * 32) is None


def test_a_misspelled_rev_fails_closed(repo: Callable[..., None]) -> None:
    repo(**{"README.md": "x"})
    with pytest.raises(ChampionError, match="'mian' not found"):
        from_git("models/model.pt", "mian", "a" * 32)


def test_a_lock_that_pins_no_model_fails_closed(repo: Callable[..., None]) -> None:
    repo(**{"dvc.lock": lock("b" * 32, path="models/other.pt")})
    with pytest.raises(ChampionError, match=r"pins no models/model\.pt"):
        from_git("models/model.pt", "main", "a" * 32)


def test_a_pinned_champion_that_cannot_be_fetched_fails_closed(repo: Callable[..., None]) -> None:
    subprocess.run(["dvc", "init", "-q"], check=True)
    repo(**{"dvc.lock": lock("b" * 32)})
    with pytest.raises(ChampionError, match="cannot be fetched"):
        from_git("models/model.pt", "main", "a" * 32)


def test_the_candidates_own_commit_is_never_its_champion(repo: Callable[..., None]) -> None:
    repo(**{"README.md": "x"})
    repo(**{"dvc.lock": lock("a" * 32)})  # HEAD == main and pins the candidate itself
    assert from_git("models/model.pt", "main", "a" * 32) is None  # its parent released nothing
