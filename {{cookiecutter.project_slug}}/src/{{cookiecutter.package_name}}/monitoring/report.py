"""The drift report as one self-contained HTML page: a table of every statistic, one plot per drifted feature."""

from __future__ import annotations

import base64
import html
import io
import itertools
from typing import Any

import numpy as np
import pandas as pd

from .drift import categorical_shares, monitored_features, numeric_bins, numeric_shares, skipped, where
from .record import SCORE_COLUMN


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot(name: str, kind: str, reference: np.ndarray, current: np.ndarray, bins: int) -> str:
    """Reference vs traffic share per bin: the bins the statistic was computed on."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file, not a window
    import matplotlib.pyplot as plt

    if kind == "categorical":
        reference, current = reference.astype(str), current.astype(str)
        labels = np.unique(np.concatenate([reference, current]))
        ref_share, cur_share = categorical_shares(reference, labels), categorical_shares(current, labels)
        names = labels.tolist()
    else:
        edges = numeric_bins(reference, bins)
        ref_share, cur_share = numeric_shares(reference, edges), numeric_shares(current, edges)
        bounds = ["-inf", *(f"{e:.4g}" for e in edges), "inf"]
        names = [*(f"{low}..{high}" for low, high in itertools.pairwise(bounds)), "missing"]
    figure, axis = plt.subplots(figsize=(7, 3))
    where = np.arange(len(names))
    axis.bar(where - 0.2, ref_share, 0.4, label="training data")
    axis.bar(where + 0.2, cur_share, 0.4, label="traffic")
    axis.set_xticks(where, names, rotation=45, ha="right", fontsize=7)
    axis.set_ylabel("share of rows")
    axis.set_title(name)
    axis.legend()
    try:
        return _png(figure)
    finally:
        plt.close(figure)


def html_report(
    report: dict[str, Any],
    reference: pd.DataFrame,
    traffic: pd.DataFrame,
    bins: int,
    reference_scores: np.ndarray | None = None,
) -> str:
    ref, cur = (monitored_features(reference), monitored_features(traffic)) if report["features"] else ({}, {})
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{found['kind']}</td><td>{found['value']:.4f}</td>"
        f"<td>{found['limit']}</td><td>{'DRIFT' if found['drifted'] else 'ok'}</td></tr>"
        for name, found in report["features"].items()
    )
    score = report["score"]
    if score:
        rows += (
            f"<tr><td>score</td><td>numeric</td><td>{score['value']:.4f}</td><td>{score['limit']}</td>"
            f"<td>{'DRIFT' if score['drifted'] else 'ok'}</td></tr>"
        )
    plots = [
        (name, _plot(name, report["features"][name]["kind"], ref[name], cur[name], bins)) for name in report["flagged"]
    ]
    if score and score["drifted"] and reference_scores is not None:
        plots.append(("score", _plot("score", "numeric", reference_scores, traffic[SCORE_COLUMN].to_numpy(), bins)))
    figures = "".join(f'<h3>{n}</h3><img alt="{n}" src="data:image/png;base64,{png}">' for n, png in plots)
    window = report["window"] or {}
    unreadable = report.get("unreadable") or {"lines": 0, "named": []}
    verdict = "no drift" if report["enough_rows"] else "too little traffic for a verdict"
    verdict = "too much of the log is unreadable for a verdict" if unreadable.get("exceeded") else verdict
    verdict = "drift" if report["drift"] else verdict
    skipped_lines = (
        f"<p>{html.escape(skipped(unreadable).capitalize())} (a share of at most {unreadable['max_share']} allowed): "
        + ", ".join(html.escape(where(named)) for named in unreadable["named"])
        + "</p>"
        if unreadable["named"]
        else ""
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title></head><body>"
        f"<h1>Drift report: {verdict}</h1>"
        f"<p>{report['rows']} logged rows from {window.get('start', '?')} to {window.get('end', '?')}, "
        f"against {report['reference_rows']} training rows. Statistic: population stability index.</p>{skipped_lines}"
        "<table border='1' cellpadding='4'><tr><th>feature</th><th>kind</th><th>PSI</th><th>limit</th><th></th></tr>"
        f"{rows}</table>{figures}</body></html>\n"
    )
