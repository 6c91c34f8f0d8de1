"""The release gate: absolute thresholds, no regression against the champion, latency, behaviour.

Fails closed: a missing or malformed input is a failed gate, never a pass.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from sklearn import metrics as skm

from ..errors import PipelineError

METRIC_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": lambda y, s: float(skm.roc_auc_score(y, s)),
    "pr_auc": lambda y, s: float(skm.average_precision_score(y, s)),
}
# Metrics where smaller is better; every other metric is better when larger.
LOWER_IS_BETTER = {"brier", "log_loss", "false_positive_rate"}


class GateConfigError(PipelineError):
    pass


@dataclasses.dataclass
class Check:
    name: str
    passed: bool
    observed: Any
    limit: Any
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def threshold_checks(overall: dict[str, Any], thresholds: DictConfig) -> list[Check]:
    checks = []
    for metric, bounds in OmegaConf.to_container(thresholds).items():  # type: ignore[union-attr]
        if metric not in overall:
            raise GateConfigError(
                f"gate.thresholds names metric {metric!r}, which metrics.json does not have "
                f"(known: {', '.join(sorted(k for k, v in overall.items() if _finite(v)))})"
            )
        unknown = set(bounds) - {"min", "max"}
        if unknown:
            raise GateConfigError(f"gate.thresholds.{metric}: unknown bound(s) {sorted(unknown)}; use min and/or max")
        value = overall[metric]
        for bound, limit in bounds.items():
            if not _finite(value):
                checks.append(Check(f"threshold_{metric}_{bound}", False, value, limit, "metric is missing or NaN"))
                continue
            passed = value >= limit if bound == "min" else value <= limit
            checks.append(
                Check(
                    f"threshold_{metric}_{bound}",
                    passed,
                    value,
                    limit,
                    f"{metric} {'>=' if bound == 'min' else '<='} {limit}",
                )
            )
    return checks


def paired_bootstrap(
    labels: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    metric: str,
    n_bootstrap: int,
    confidence: float,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Candidate-minus-champion difference of `metric` on the same rows, with a percentile interval.

    Both models are scored on each resample, so the noise of the golden set itself cancels.
    """
    score = METRIC_FUNCTIONS[metric]
    point = score(labels, candidate) - score(labels, champion)
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(n_bootstrap):
        rows = rng.integers(0, len(labels), len(labels))
        sampled = labels[rows]
        if sampled.min() == sampled.max():
            continue  # a resample with one class has no AUC
        differences.append(score(sampled, candidate[rows]) - score(sampled, champion[rows]))
    if not differences:
        return point, point, point
    alpha = (1 - confidence) / 2
    low, high = np.quantile(differences, [alpha, 1 - alpha])
    return point, float(low), float(high)


def regression_check(
    name: str,
    labels: np.ndarray,
    candidate: np.ndarray,
    champion: np.ndarray,
    metric: str,
    tolerance: float,
    confidence: float,
    n_bootstrap: int,
) -> Check:
    """Fail only when the candidate is worse beyond `tolerance` AND the interval excludes no change.

    An equal model (difference exactly 0) always passes: noise is not a regression.
    """
    if metric not in METRIC_FUNCTIONS:
        raise GateConfigError(f"regression metric {metric!r}: expected one of {', '.join(METRIC_FUNCTIONS)}")
    point, low, high = paired_bootstrap(labels, candidate, champion, metric, n_bootstrap, confidence)
    significant = high < 0
    passed = not (significant and point < -tolerance)
    detail = (
        f"{metric} candidate - champion = {point:+.4f}, {confidence:.0%} CI [{low:+.4f}, {high:+.4f}]; "
        f"fails when below -{tolerance} and the CI excludes 0"
    )
    return Check(name, passed, round(point, 6), -tolerance, detail)


def champion_checks(
    gate_cfg: DictConfig, labels: np.ndarray, slices: dict[str, np.ndarray], candidate: np.ndarray, champion: np.ndarray
) -> list[Check]:
    regression = gate_cfg.regression
    checks = [
        regression_check(
            "no_regression_" + regression.metric,
            labels,
            candidate,
            champion,
            regression.metric,
            regression.tolerance,
            regression.confidence,
            regression.n_bootstrap,
        )
    ]
    for name, mask in slices.items():
        if name == "overall" or mask.sum() < regression.min_slice_rows or len(set(labels[mask])) < 2:
            continue
        checks.append(
            regression_check(
                f"no_regression_{regression.slice_metric}[{name}]",
                labels[mask],
                candidate[mask],
                champion[mask],
                regression.slice_metric,
                regression.slice_tolerance,
                regression.confidence,
                max(50, regression.n_bootstrap // 5),
            )
        )
    return checks


def latency_check(latency: dict[str, Any], gate_cfg: DictConfig) -> Check:
    observed = latency.get("ms_per_row_batch")
    limit = float(gate_cfg.latency.max_ms_per_row)
    passed = isinstance(observed, (int, float)) and _finite(observed) and observed <= limit
    return Check("latency_ms_per_row", bool(passed), observed, limit, "median batch inference time per row")


def behavioural_gate_checks(behavioural: dict[str, Any], limits: DictConfig) -> list[Check]:
    """Each behavioural observation against the limit for its kind (conf/gate `behavioural`)."""
    if not behavioural:
        return [Check("behavioural_checks_present", False, 0, ">=1", "metrics.json lists no behavioural checks")]
    checks = []
    for name, result in behavioural.items():
        bounds = limits.get(result["kind"])
        if bounds is None:
            raise GateConfigError(f"gate.behavioural has no limit for checks of kind {result['kind']!r} ({name})")
        observed = result["observed"]
        bound, limit = next(iter(bounds.items()))
        passed = _finite(observed) and (observed >= limit if bound == "min" else observed <= limit)
        checks.append(Check(f"behaviour_{name}", bool(passed), observed, limit, result["detail"]))
    return checks


def render_table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks) if checks else 10
    lines = [f"{'check':<{width}}  result  observed      limit"]
    for check in checks:
        observed = f"{check.observed:.4g}" if _finite(check.observed) else str(check.observed)
        limit = f"{check.limit:.4g}" if _finite(check.limit) else str(check.limit)
        lines.append(f"{check.name:<{width}}  {'PASS' if check.passed else 'FAIL':<6}  {observed:<12}  {limit}")
    return "\n".join(lines)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise PipelineError(f"{path} not found: run the evaluate stage first (`dvc repro evaluate`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PipelineError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("overall"), dict):
        raise PipelineError(f"{path} has no 'overall' metrics")
    return data


def run_gate(cfg: DictConfig) -> dict[str, Any]:
    """Judge the candidate; return the reports/gate.json document."""
    from ..data import slice_masks
    from ..data.schema import ID_COLUMN, LABEL_COLUMN
    from ..evaluation.evaluate import load_golden
    from ..lineage import file_md5
    from .champion import resolve_champion

    reports = Path(cfg.paths.reports)
    metrics = _read_json(reports / "metrics.json")
    checks = threshold_checks(metrics["overall"], cfg.gate.thresholds)
    checks.append(latency_check(metrics.get("latency", {}), cfg.gate))
    checks += behavioural_gate_checks(metrics.get("behavioural", {}), cfg.gate.behavioural)
    candidate = {"model_md5": file_md5(cfg.paths.model), "metrics": metrics["overall"]}
    champion = resolve_champion(cfg)
    champion_doc: dict[str, Any] | None = None
    if champion is None:
        print("no champion yet: judging absolute thresholds only")
    else:
        golden = load_golden(cfg.paths.golden)
        predictions = pd.read_parquet(reports / "predictions.parquet").set_index(ID_COLUMN)
        if len(predictions) != len(golden) or not predictions.index.equals(pd.Index(golden[ID_COLUMN])):
            raise PipelineError("reports/predictions.parquet does not match the golden set: re-run evaluate")
        labels = golden[LABEL_COLUMN].to_numpy()
        champion_scores = np.asarray(champion.score(golden), dtype=np.float64)
        checks += champion_checks(
            cfg.gate, labels, slice_masks(golden), predictions["score"].to_numpy(), champion_scores
        )
        champion_doc = {
            **champion.describe(),
            "metrics": {m: fn(labels, champion_scores) for m, fn in METRIC_FUNCTIONS.items()},
        }
    return {
        "passed": all(check.passed for check in checks),
        "champion": champion_doc,
        "candidate": candidate,
        "checks": [check.as_dict() for check in checks],
    }


def failed_gate(reason: str) -> dict[str, Any]:
    """The report of a gate that could not judge: failed, with the reason as its one check."""
    return {
        "passed": False,
        "champion": None,
        "candidate": None,
        "checks": [Check("gate_inputs", False, None, None, reason).as_dict()],
    }
