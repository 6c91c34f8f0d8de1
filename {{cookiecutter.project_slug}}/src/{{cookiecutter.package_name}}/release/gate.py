"""The release gate: absolute thresholds, non-inferiority against the champion, latency, behaviour.

Fails closed: a missing or malformed input is a failed gate, never a pass.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ..errors import PipelineError
from ..files import read_document

if TYPE_CHECKING:
    from .champion import Champion

# Metrics where smaller is better; every other metric is better when larger.
LOWER_IS_BETTER = {"brier", "log_loss", "false_positive_rate"}
RANKING_METRICS = ("roc_auc", "pr_auc")
ONE_CLASS_METRICS = ("recall", "false_positive_rate")
NOT_COMPARABLE = "not compared with the champion"
FIRST_RELEASE = "first release: the rev pins no model and the registry has no `champion` alias"
BOOTSTRAP_CHUNK = 100  # resamples scored at once: bounds memory to a few chunk x rows arrays


class GateConfigError(PipelineError):
    pass


@dataclasses.dataclass
class Check:
    name: str
    passed: bool
    observed: Any
    limit: Any
    detail: str
    judged: bool = True  # False: too little data to judge; `passed` then follows conf/gate

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def threshold_checks(overall: dict[str, Any], thresholds: DictConfig) -> list[Check]:
    checks = []
    for metric, bounds in OmegaConf.to_container(thresholds).items():  # type: ignore[union-attr]
        if metric not in overall:
            raise GateConfigError(
                f"dataset.thresholds names metric {metric!r}, which metrics.json does not have "
                f"(known: {', '.join(sorted(k for k, v in overall.items() if _finite(v)))})"
            )
        unknown = set(bounds) - {"min", "max"}
        if unknown:
            raise GateConfigError(
                f"dataset.thresholds.{metric}: unknown bound(s) {sorted(unknown)}; use min and/or max"
            )
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


@dataclasses.dataclass(frozen=True)
class Scored:
    """One model's scores on the golden rows: sorted by score, any resample is a weighted running sum."""

    labels: np.ndarray
    scores: np.ndarray
    threshold: float

    def _groups(self, descending: bool) -> tuple[np.ndarray, np.ndarray]:
        """Row order by score, and the position of the last row of each group of tied scores in it."""
        keys = -self.scores if descending else self.scores
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True])
        return order, ends

    def metric(self, name: str, weights: np.ndarray) -> np.ndarray:
        """`name` for each row of `weights` (resample counts, shape (B, rows)); NaN where undefined."""
        positive = self.labels.astype(bool)
        if name in RANKING_METRICS:
            order, ends = self._groups(descending=name == "pr_auc")
            ordered = weights[:, order]
            # Cumulative weight of positives and negatives up to the end of each tie group.
            pos = np.cumsum(ordered * positive[order], axis=1)[:, ends]
            neg = np.cumsum(ordered, axis=1)[:, ends] - pos
            return _roc_auc(pos, neg) if name == "roc_auc" else _average_precision(pos, neg)
        flagged = self.scores >= self.threshold
        if name == "recall":
            return _ratio(weights @ (flagged & positive), weights @ positive)
        if name == "false_positive_rate":
            return _ratio(weights @ (flagged & ~positive), weights @ ~positive)
        raise GateConfigError(f"regression metric {name!r}: expected one of {RANKING_METRICS + ONE_CLASS_METRICS}")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _roc_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney from cumulative weights at tie-group ends, ascending scores (ties count one half)."""
    in_group = np.diff(pos, axis=1, prepend=0)
    below_and_half_tied = (neg + np.concatenate([np.zeros_like(neg[:, :1]), neg[:, :-1]], axis=1)) / 2
    return _ratio((in_group * below_and_half_tied).sum(1), pos[:, -1] * neg[:, -1])


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """sklearn's step-wise AP from cumulative weights at tie-group ends, descending scores."""
    flagged = pos + neg
    precision = np.divide(pos, flagged, out=np.zeros_like(flagged), where=flagged > 0)
    return _ratio((np.diff(pos, axis=1, prepend=0) * precision).sum(1), pos[:, -1])


def metric_value(name: str, labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """`name` on the rows as they are (every row weighted once)."""
    return float(Scored(labels, scores, threshold).metric(name, np.ones((1, len(labels))))[0])


def paired_bootstrap(
    candidate: Scored, champion: Scored, metric: str, n_bootstrap: int, seed: int = 0
) -> tuple[float, np.ndarray]:
    """(point, resampled differences) of the candidate's improvement over the champion on the same rows.

    Both models are scored on each resample, so the noise of the golden set itself cancels. Resamples
    are drawn as an index matrix and turned into per-row counts, then scored all at once.
    """
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    rows = len(candidate.labels)
    ones = np.ones((1, rows))
    point = sign * float(candidate.metric(metric, ones)[0] - champion.metric(metric, ones)[0])
    rng = np.random.default_rng(seed)
    differences = []
    for start in range(0, n_bootstrap, BOOTSTRAP_CHUNK):
        count = min(BOOTSTRAP_CHUNK, n_bootstrap - start)
        index = rng.integers(0, rows, (count, rows))
        flat = (index + rows * np.arange(count)[:, None]).ravel()
        # float32 halves the memory traffic; counts and their running sums stay exact below 2**24 rows.
        weights = np.bincount(flat, minlength=count * rows).reshape(count, rows).astype(np.float32)
        differences.append(sign * (candidate.metric(metric, weights) - champion.metric(metric, weights)))
    resampled = np.concatenate(differences)
    return point, resampled[np.isfinite(resampled)]


def non_inferiority_check(
    name: str, candidate: Scored, champion: Scored, metric: str, tolerance: float, regression: DictConfig
) -> Check:
    """Pass only when the lower confidence bound of (candidate - champion) is >= -tolerance.

    The burden of proof is on the candidate: a drop that the golden set cannot rule out fails.
    """
    confidence = float(regression.confidence)
    point, resampled = paired_bootstrap(candidate, champion, metric, int(regression.n_bootstrap))
    if len(resampled) < int(regression.n_bootstrap) // 2:
        return Check(name, False, None, -tolerance, f"{metric}: too few resamples with a defined value")
    low = float(np.quantile(resampled, 1 - confidence))
    passed = bool(math.isfinite(point) and low >= -tolerance)
    worse = " (lower is better: sign flipped)" if metric in LOWER_IS_BETTER else ""
    detail = (
        f"{metric} candidate - champion{worse} = {point:+.4f}; one-sided {confidence:.0%} lower bound "
        f"{low:+.4f} must be >= -{tolerance} (n={len(candidate.labels)})"
    )
    return Check(name, passed, round(low, 6) + 0.0, -tolerance, detail)  # + 0.0: no "-0.0" in the report


def slice_check(name: str, candidate: Scored, champion: Scored, regression: DictConfig) -> Check:
    """One slice, judged by the metric it has data for; 'not judged' (with the reason) when too small."""
    positives = int(candidate.labels.sum())
    negatives = len(candidate.labels) - positives
    min_rows, min_class = int(regression.min_slice_rows), int(regression.min_slice_positives)
    if positives + negatives >= min_rows and min(positives, negatives) >= min_class:
        metric, tolerance = str(regression.slice_metric), float(regression.slice_tolerance)
    elif positives >= min_class and negatives == 0:
        metric, tolerance = "recall", float(regression.one_class_tolerance.recall)
    elif negatives >= min_rows and positives == 0:
        metric, tolerance = "false_positive_rate", float(regression.one_class_tolerance.false_positive_rate)
    else:
        passed = not bool(regression.unjudged_slice_fails)
        reason = (
            f"not judged: {positives} positive and {negatives} negative rows; an AUC needs >= {min_rows} rows "
            f"with >= {min_class} of each class, an all-positive slice >= {min_class} rows, an all-negative one "
            f">= {min_rows}; "
            f"gate.regression.unjudged_slice_fails={bool(regression.unjudged_slice_fails)}"
        )
        return Check(f"no_regression[{name}]", passed, None, None, reason, judged=False)
    return non_inferiority_check(f"no_regression_{metric}[{name}]", candidate, champion, metric, tolerance, regression)


def champion_checks(
    gate_cfg: DictConfig,
    labels: np.ndarray,
    slices: dict[str, np.ndarray],
    candidate: tuple[np.ndarray, float],
    champion: tuple[np.ndarray, float],
) -> list[Check]:
    """Non-inferiority overall and on every slice; `candidate`/`champion` are (scores, threshold)."""
    regression = gate_cfg.regression
    new, old = Scored(labels, *candidate), Scored(labels, *champion)
    metric = str(regression.metric)
    checks = [
        non_inferiority_check(f"no_regression_{metric}", new, old, metric, float(regression.tolerance), regression)
    ]
    for name, mask in slices.items():
        if name == "overall":
            continue
        new_slice, old_slice = (Scored(labels[mask], s.scores[mask], s.threshold) for s in (new, old))
        checks.append(slice_check(name, new_slice, old_slice, regression))
    return checks


def latency_check(latency: dict[str, Any], gate_cfg: DictConfig) -> Check:
    """What serving pays: p99 of single-row scoring calls, in process (see evaluation.measure_latency)."""
    observed = latency.get("ms_single_row_p99")
    limit = float(gate_cfg.latency.max_ms_single_row_p99)
    passed = isinstance(observed, (int, float)) and _finite(observed) and observed <= limit
    calls = latency.get("single_row_calls", "?")
    return Check("latency_single_row_p99_ms", bool(passed), observed, limit, f"p99 of {calls} one-row predict calls")


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
        result = ("PASS" if check.passed else "FAIL") if check.judged else "SKIP" if check.passed else "FAIL"
        lines.append(f"{check.name:<{width}}  {result:<6}  {observed:<12}  {limit}")
    return "\n".join(lines)


def _read_json(path: Path) -> dict[str, Any]:
    data = read_document(path, PipelineError, "run the evaluate stage first (`dvc repro evaluate`)")
    if not isinstance(data, dict) or not isinstance(data.get("overall"), dict):
        raise PipelineError(f"{path} has no 'overall' metrics")
    return data


def _golden_predictions(cfg: DictConfig, reports: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from ..data.schema import ID_COLUMN
    from ..evaluation.evaluate import load_golden

    golden = load_golden(cfg.paths.golden)
    predictions = pd.read_parquet(reports / "predictions.parquet").set_index(ID_COLUMN)
    if len(predictions) != len(golden) or not predictions.index.equals(pd.Index(golden[ID_COLUMN])):
        raise PipelineError("reports/predictions.parquet does not match the golden set: re-run evaluate")
    return golden, predictions


def _champion_lookup(cfg: DictConfig, model_md5: str) -> tuple[Champion | None, Check]:
    """The champion, and a check that says which one, that this is a first release, or why none was found."""
    from .champion import ChampionError, resolve_champion

    try:
        champion = resolve_champion(cfg, model_md5)
    except ChampionError as error:
        return None, Check("champion_lookup", False, None, None, str(error))
    found = f"{champion.source} {champion.reference}" if champion else "none"
    detail = f"found in {champion.location}; the candidate is compared with it" if champion else FIRST_RELEASE
    return champion, Check("champion_lookup", True, found, None, detail)


def comparability_check(champion: Champion) -> Check:
    """Whether the champion reads rows as the candidate does (same feature signature), so they can be compared.

    A first model on another dataset or feature set has no comparable champion: the gate then judges the
    thresholds, behaviour and latency alone, and says so here (and so in the PR comment and the model card).
    """
    from ..training.preprocessing import feature_signature

    ours, theirs = feature_signature(), champion.signature
    if theirs == ours:
        return Check("champion_comparable", True, ours[:12], ours[:12], "same dataset and feature set: compared")
    detail = (
        f"{NOT_COMPARABLE}: the champion was trained on another dataset or feature set (feature signature "
        f"{(theirs or 'unknown')[:12]}, the candidate's {ours[:12]}); this is the first model on this data, "
        "judged on thresholds, behaviour and latency alone"
    )
    return Check("champion_comparable", True, (theirs or "unknown")[:12], ours[:12], detail, judged=False)


def run_gate(cfg: DictConfig) -> dict[str, Any]:
    """Judge the candidate; return the reports/gate.json document."""
    from ..lineage import file_md5

    reports = Path(cfg.paths.reports)
    metrics = _read_json(reports / "metrics.json")
    checks = threshold_checks(metrics["overall"], cfg.dataset.thresholds)
    checks.append(latency_check(metrics.get("latency", {}), cfg.gate))
    checks += behavioural_gate_checks(metrics.get("behavioural", {}), cfg.gate.behavioural)
    model_md5 = file_md5(cfg.paths.model)
    candidate = {"model_md5": model_md5, "golden_md5": file_md5(cfg.paths.golden), "metrics": metrics["overall"]}
    champion_doc: dict[str, Any] | None = None
    champion, lookup = _champion_lookup(cfg, model_md5)
    checks.append(lookup)
    if champion is not None:
        comparable = comparability_check(champion)
        checks.append(comparable)
        if not comparable.judged:
            champion_doc = {**champion.describe(), "comparable": False}
            champion = None
    if champion is not None:
        from ..data import slice_masks
        from ..data.schema import LABEL_COLUMN

        golden, predictions = _golden_predictions(cfg, reports)
        labels = golden[LABEL_COLUMN].to_numpy()
        champion_scores = np.asarray(champion.score(golden), dtype=np.float64)
        checks += champion_checks(
            cfg.gate,
            labels,
            slice_masks(golden),
            (predictions["score"].to_numpy(), float(metrics["threshold"])),
            (champion_scores, champion.threshold),
        )
        champion_doc = {
            **champion.describe(),
            "comparable": True,
            "metrics": {m: metric_value(m, labels, champion_scores) for m in RANKING_METRICS},
        }
    checks.append(slice_coverage(metrics, list(cfg.dataset.slices)))
    checks += _unjudged_slices(metrics, checks)
    return {
        "passed": all(check.passed for check in checks),
        "champion": champion_doc,
        "candidate": candidate,
        "checks": [check.as_dict() for check in checks],
    }


def slice_coverage(metrics: dict[str, Any], curated: list[str]) -> Check:
    """Every curated slice (conf/dataset `slices`) reached metrics.json, so the gate judges each one.

    Evaluation reports the slices it finds in the golden set: one missing there would otherwise go unnoticed.
    """
    evaluated = set(metrics.get("slices", {}))
    missing = [name for name in curated if name not in evaluated]
    detail = f"missing from metrics.json: {', '.join(missing)}" if missing else "every curated slice was evaluated"
    return Check("slice_coverage", not missing, len(curated) - len(missing), len(curated), detail)


def _unjudged_slices(metrics: dict[str, Any], checks: list[Check]) -> list[Check]:
    """Every slice of metrics.json is named in gate.json, also when there is no champion to compare with."""
    named = " ".join(check.name for check in checks)
    missing = sorted(set(metrics.get("slices", {})) - {"overall"})
    return [
        Check(f"no_regression[{name}]", True, None, None, "not judged: no comparable champion", judged=False)
        for name in missing
        if f"[{name}]" not in named
    ]


def failed_gate(reason: str) -> dict[str, Any]:
    """The report of a gate that could not judge: failed, with the reason as its one check."""
    return {
        "passed": False,
        "champion": None,
        "candidate": None,
        "checks": [Check("gate_inputs", False, None, None, reason).as_dict()],
    }
