"""Golden-set metrics, per slice, and the curves behind the plots."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm

PRECISION_TARGET = 0.8
CURVE_POINTS = 200


def recall_at_precision(labels: np.ndarray, scores: np.ndarray, target: float = PRECISION_TARGET) -> float:
    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    reachable = recall[precision >= target]
    return float(reachable.max()) if len(reachable) else 0.0


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Every metric that is defined on these rows (AUCs need both classes; recall needs positives)."""
    labels = labels.astype(np.int64)
    predicted = scores >= threshold
    positives, negatives = int(labels.sum()), int((1 - labels).sum())
    result: dict[str, Any] = {
        "rows": len(labels),
        "positives": positives,
        "positive_rate": positives / len(labels) if len(labels) else math.nan,
        "mean_score": float(scores.mean()) if len(scores) else math.nan,
        "accuracy": float((predicted == labels.astype(bool)).mean()) if len(labels) else math.nan,
        "brier": float(np.mean((scores - labels) ** 2)) if len(labels) else math.nan,
    }
    if positives and negatives:
        # Against always predicting these rows' own base rate (Brier p(1-p)): 0 is no better than that,
        # 1 is perfect. A raw Brier limit means little across datasets; this one means the same anywhere.
        base_rate = positives / len(labels)
        result["brier_skill"] = 1.0 - result["brier"] / (base_rate * (1.0 - base_rate))
    if positives:
        result["recall"] = float(predicted[labels == 1].mean())
    if negatives:
        result["false_positive_rate"] = float(predicted[labels == 0].mean())
    if predicted.any():
        result["precision"] = float(labels[predicted].mean())
    if positives and negatives:
        result["roc_auc"] = float(skm.roc_auc_score(labels, scores))
        result["pr_auc"] = float(skm.average_precision_score(labels, scores))
        result["log_loss"] = float(skm.log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1]))
        result[f"recall_at_precision_{PRECISION_TARGET:g}"] = recall_at_precision(labels, scores)
    return result


def _thin(points: list[dict[str, float]]) -> list[dict[str, float]]:
    """At most CURVE_POINTS points, first and last kept, so plot files stay small."""
    if len(points) <= CURVE_POINTS:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, CURVE_POINTS).round().astype(int))
    return [points[i] for i in keep]


def plot_data(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Data files for `dvc plots`: ROC, precision-recall, calibration, confusion rows."""
    fpr, tpr, _ = skm.roc_curve(labels, scores)
    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    bins = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(scores, bins) - 1, 0, 9)
    calibration = [
        {
            "mean_predicted": round(float(scores[which == b].mean()), 6),
            "fraction_positive": round(float(labels[which == b].mean()), 6),
            "rows": int((which == b).sum()),
        }
        for b in range(10)
        if (which == b).any()
    ]
    predicted = (scores >= threshold).astype(int)
    return {
        "roc": _thin([{"fpr": round(float(f), 6), "tpr": round(float(t), 6)} for f, t in zip(fpr, tpr, strict=True)]),
        "precision_recall": _thin(
            [
                {"recall": round(float(r), 6), "precision": round(float(p), 6)}
                for r, p in zip(recall[::-1], precision[::-1], strict=True)
            ]
        ),
        "calibration": calibration,
        "confusion": [{"actual": int(a), "predicted": int(p)} for a, p in zip(labels, predicted, strict=True)],
    }
