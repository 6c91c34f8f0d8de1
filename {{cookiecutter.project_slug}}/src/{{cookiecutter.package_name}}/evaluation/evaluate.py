"""Score a model on the golden set: metrics overall and per slice, behaviour, latency, plot data."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandera.errors import SchemaErrors

from ..data import GoldenSchema, slice_masks
from ..data.schema import ID_COLUMN, LABEL_COLUMN, SLICE_COLUMN
from ..data.validation import read_table
from ..errors import PipelineError
from ..files import write_atomically, write_json
from .behaviour import behavioural_checks
from .metrics import classification_metrics, plot_data

if TYPE_CHECKING:  # the gate loads the golden set without importing torch and lightning
    from ..training.artifact import ScoringModel


class GoldenSetError(PipelineError):
    pass


def load_golden(path: str | Path) -> pd.DataFrame:
    """The golden set, held to the same schema as training data (plus its slice column)."""
    frame = read_table(path)
    try:
        return GoldenSchema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases.head(10)
        listed = "; ".join(f"{r.column}: {r.check} ({r.failure_case!r})" for r in cases.itertuples())
        raise GoldenSetError(f"{path} does not match the golden-set schema: {listed}") from errors


def measure_latency(
    model: ScoringModel, rows: pd.DataFrame, repeats: int = 5, single_calls: int = 300
) -> dict[str, float]:
    """Single-row latency as serving pays it (one request, one row: p99 of repeated in-process calls),
    and, for reference, milliseconds per row inside a large batch. Warmed up first."""
    model.predict_proba(rows.head(8))
    single = [rows.iloc[[i % len(rows)]] for i in range(single_calls)]
    for frame in single[:20]:
        model.predict_proba(frame)
    single_times = []
    for frame in single:
        started = time.perf_counter()
        model.predict_proba(frame)
        single_times.append((time.perf_counter() - started) * 1000)
    batch_times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_proba(rows)
        batch_times.append((time.perf_counter() - started) * 1000 / len(rows))
    return {
        "ms_single_row_p99": float(np.quantile(single_times, 0.99)),
        "ms_single_row": float(np.median(single_times)),
        "single_row_calls": single_calls,
        "ms_per_row_batch": float(np.median(batch_times)),
        "batch_rows": len(rows),
    }


def evaluate(
    model: ScoringModel, golden: pd.DataFrame, behaviour: Mapping[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """(metrics report, per-row predictions, plot data) for `model` on `golden`; `behaviour`: the declared checks."""
    labels = golden[LABEL_COLUMN].to_numpy()
    scores = model.predict_proba(golden)
    if not np.isfinite(scores).all():
        raise GoldenSetError("the model produced non-finite scores on the golden set")
    slices = {
        name: classification_metrics(labels[mask], scores[mask], model.threshold)
        for name, mask in slice_masks(golden).items()
        if name != "overall" and mask.any()
    }
    results = behavioural_checks(model.predict_proba, golden, model.threshold, behaviour)
    report = {
        "overall": classification_metrics(labels, scores, model.threshold),
        "threshold": model.threshold,
        "slices": slices,
        "latency": measure_latency(model, golden.drop(columns=[LABEL_COLUMN]).head(4096)),
        "behavioural": {check.name: check.as_dict() for check in results},
    }
    predictions = pd.DataFrame(
        {
            ID_COLUMN: golden[ID_COLUMN].to_numpy(),
            SLICE_COLUMN: golden[SLICE_COLUMN].to_numpy(),
            LABEL_COLUMN: labels,
            "score": scores,
        }
    )
    return report, predictions, plot_data(labels, scores, model.threshold)


def write_evaluation(
    report: dict[str, Any], predictions: pd.DataFrame, plots: dict[str, Any], reports_dir: Path, plots_dir: Path
) -> None:
    reports_dir.mkdir(parents=True, exist_ok=True)
    plots_dir.mkdir(parents=True, exist_ok=True)
    write_json(reports_dir / "metrics.json", report)
    predictions.to_parquet(reports_dir / "predictions.parquet", index=False)
    for name, rows in plots.items():
        write_atomically(plots_dir / f"{name}.json", json.dumps(rows) + "\n")
