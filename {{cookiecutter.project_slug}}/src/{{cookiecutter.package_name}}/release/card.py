"""The model card, generated from the pipeline's own reports: Markdown with front-matter, and HTML with plots."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import jinja2
import yaml

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader(__package__ or __name__.rpartition(".")[0], "templates"),
    autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
    keep_trailing_newline=True,
)
CARD_METRICS = ("roc_auc", "pr_auc", "recall_at_precision_0.8", "precision", "recall", "brier", "log_loss")


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "n/a" if value is None else str(value)
    if isinstance(value, (int, float)):
        return f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    return str(value)


TEMPLATES.filters["fmt"] = _fmt


def front_matter(model_name: str, license_id: str, metrics: dict[str, Any], golden_md5: str, task: str) -> str:
    """Hugging Face model-card metadata, with a model-index of the golden-set results."""
    document = {
        "license": license_id.lower(),
        "library_name": "pytorch",
        "pipeline_tag": "tabular-classification",
        "tags": ["tabular-classification", "dvc", "mlflow", "bentoml"],
        "model-index": [
            {
                "name": model_name,
                "results": [
                    {
                        "task": {"type": "tabular-classification", "name": task},
                        "dataset": {"type": "golden-set", "name": "Golden set", "revision": golden_md5},
                        "metrics": [
                            {"type": name, "name": name, "value": round(float(metrics[name]), 6)}
                            for name in CARD_METRICS
                            if name in metrics
                        ],
                    }
                ],
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False).strip()


def _figure_png(draw: Any) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    draw(axes)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def plots(plots_dir: Path, metrics: dict[str, Any]) -> dict[str, str]:
    """Base64 PNGs drawn from the same plot data `dvc plots` shows."""
    data = {
        name: json.loads((plots_dir / f"{name}.json").read_text())
        for name in ("roc", "precision_recall", "calibration")
    }

    def roc(ax: Any) -> None:
        ax.plot([p["fpr"] for p in data["roc"]], [p["tpr"] for p in data["roc"]], color="#0969da")
        ax.plot([0, 1], [0, 1], "--", color="#8c959f")
        ax.set(
            xlabel="false positive rate",
            ylabel="true positive rate",
            title=f"ROC (AUC {metrics['overall'].get('roc_auc', float('nan')):.3f})",
        )

    def pr(ax: Any) -> None:
        ax.plot(
            [p["recall"] for p in data["precision_recall"]],
            [p["precision"] for p in data["precision_recall"]],
            color="#8250df",
        )
        ax.set(
            xlabel="recall",
            ylabel="precision",
            title=f"Precision-recall (AP {metrics['overall'].get('pr_auc', float('nan')):.3f})",
        )

    def calibration(ax: Any) -> None:
        ax.plot([0, 1], [0, 1], "--", color="#8c959f")
        ax.plot(
            [p["mean_predicted"] for p in data["calibration"]],
            [p["fraction_positive"] for p in data["calibration"]],
            "o-",
            color="#1a7f37",
        )
        ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title="Calibration")

    def slices(ax: Any) -> None:
        names = [n for n, m in metrics["slices"].items() if "recall" in m]
        ax.barh(names, [metrics["slices"][n]["recall"] for n in names], color="#bf8700")
        ax.set(xlim=(0, 1), xlabel="recall at the operating threshold", title="Recall per slice")

    return {
        "ROC curve": _figure_png(roc),
        "Precision-recall curve": _figure_png(pr),
        "Calibration": _figure_png(calibration),
        "Recall per slice": _figure_png(slices),
    }


def _versus(check: dict[str, Any] | None) -> str:
    """A slice's champion comparison in one cell: lower bound and verdict, or why it was not judged."""
    if check is None:
        return "n/a"
    if check.get("observed") is None:
        return f"not judged ({'pass' if check['passed'] else 'FAIL'})"
    return f"{check['observed']:+.4f} ({'pass' if check['passed'] else 'FAIL'})"


def _slice_rows(metrics: dict[str, Any], gate: dict[str, Any]) -> list[dict[str, str]]:
    versus = {c["name"].split("[", 1)[1].rstrip("]"): c for c in gate.get("checks", []) if "[" in c["name"]}
    rows = []
    for name, values in metrics["slices"].items():
        check = versus.get(name)
        rows.append(
            {
                "name": name,
                "rows": _fmt(values["rows"]),
                "positive_rate": _fmt(values.get("positive_rate")),
                "roc_auc": _fmt(values.get("roc_auc")),
                "recall": _fmt(values.get("recall")),
                "fpr": _fmt(values.get("false_positive_rate")),
                "versus": _versus(check),
            }
        )
    return rows


def _champion_description(champion: dict[str, Any]) -> str:
    if not champion:
        return "none yet (thresholds only)"
    found = f"{champion['source']} {champion['reference']}"
    if champion.get("comparable") is False:
        return f"{found}, trained on another dataset or feature set: not compared (thresholds only)"
    return found


def render_card(context: dict[str, Any], plots_dir: Path) -> tuple[str, str]:
    """(Markdown, HTML) of the card. `context` carries the model, its lineage and the stage reports."""
    from markdown_it import MarkdownIt

    metrics, gate = context["metrics"], context["gate"]
    champion = gate.get("champion") or {}
    champion_metrics = champion.get("metrics") or {}
    values = {
        **context,
        "front_matter": front_matter(
            context["model_name"],
            context["license"],
            metrics["overall"],
            context["golden_md5"],
            context["card"]["task"],
        ),
        "overall_rows": [
            {"name": name, "candidate": _fmt(metrics["overall"][name]), "champion": _fmt(champion_metrics.get(name))}
            for name in CARD_METRICS
            if name in metrics["overall"]
        ],
        "champion_description": _champion_description(champion),
        "slice_rows": _slice_rows(metrics, gate),
        "behavioural": list(metrics.get("behavioural", {}).values()),
        "environment_line": ", ".join(f"{k} {v}" for k, v in context["environment"].items()),
    }
    markdown = TEMPLATES.get_template("model_card.md.j2").render(**values)
    body = markdown.split("---", 2)[2] if markdown.startswith("---") else markdown
    # The HTML page has its own title: drop the Markdown H1.
    body = "\n".join(line for line in body.splitlines() if not line.startswith("# "))
    body_html = MarkdownIt("commonmark").enable("table").render(body)
    html = TEMPLATES.get_template("model_card.html.j2").render(
        **values, body_html=jinja2.utils.markupsafe.Markup(body_html), plots=plots(plots_dir, metrics)
    )
    return markdown, html
