"""Write the retrain workflow's pull-request comment: metrics vs the base branch, the gate, the plots.

    python tools/pr_report.py --base-rev main -o reports/pr_report.md
    python tools/pr_report.py --base-rev "$BASE" --dvc-diff reports/metrics_diff.md \\
        --outcome failure --run-url "$RUN_URL" -o reports/pr_report.md

Reads reports/metrics.json, gate.json, validation.json and package.json from the work tree (any may
be missing: a pipeline that stopped early still gets a report that says where), and the base
revision's reports/metrics.json through git. The body starts with a hidden marker, so the workflow
edits one comment in place on every re-run instead of adding another. Standard library only: the
report must still be written when the pipeline, or the environment, is what broke.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKER = "<!-- retrain-report -->"
# GitHub refuses comments over 65536 characters; leave room for the marker and the footer.
MAX_BODY = 60_000
# Smaller is better for these; every other metric is better when larger.
LOWER_IS_BETTER = {"brier", "log_loss", "false_positive_rate", "ms_per_row_batch", "ms_single_row", "ms_single_row_p99"}
# Shown first in the overall table, in this order; any other numeric metric follows.
HEADLINE = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "precision",
    "recall",
    "false_positive_rate",
    "accuracy",
)
SLICE_METRICS = ("rows", "positives", "roc_auc", "pr_auc", "recall", "precision")
# Rows of `dvc metrics diff` embedded at most (the tables above carry what matters).
MAX_DVC_DIFF_ROWS = 150
PLOT_NAMES = {
    "roc": "ROC",
    "precision_recall": "Precision-recall",
    "calibration": "Calibration",
    "confusion": "Confusion matrix",
}


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at `path`, or None when it is missing or unreadable (the report says so)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fresh_reader(started: Path | None) -> Callable[[Path], dict[str, Any] | None]:
    """`read_json`, skipping files written before `started` (None: every file counts).

    Reports are committed, so after a failed `dvc repro` the work tree still holds the last
    successful run's: a gate decision from then must not pass for this run's. A missing `started`
    file means the pipeline never began, so no report is this run's.
    """
    if started is None:
        return read_json
    since = started.stat().st_mtime_ns if started.exists() else None

    def read(path: Path) -> dict[str, Any] | None:
        if since is None or not path.exists() or path.stat().st_mtime_ns < since:
            return None
        return read_json(path)

    return read


def read_json_at_rev(rev: str, path: str) -> dict[str, Any] | None:
    """`path` as committed at git revision `rev`, or None when the revision or the file is not there."""
    try:
        shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    if shown.returncode != 0:
        return None
    try:
        data = json.loads(shown.stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fmt(value: Any) -> str:
    """Numbers to 4 significant digits; counts stay whole; anything else as text."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:.4g}"
    return cell(str(value))


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def delta(metric: str, base: Any, current: Any) -> str:
    """Signed change with a marker saying whether it is better or worse for this metric."""
    if not (is_number(base) and is_number(current)) or any(map(math.isnan, (float(base), float(current)))):
        return "new" if base is None and is_number(current) else "–"
    change = float(current) - float(base)
    if change == 0:
        return "±0"
    better = change < 0 if metric in LOWER_IS_BETTER else change > 0
    text = f"{change:+d}" if isinstance(current, int) and isinstance(base, int) else f"{change:+.4g}"
    return f"{text} {'🟢' if better else '🔴'}"


def ordered_metrics(*tables: dict[str, Any] | None) -> list[str]:
    """Numeric metric names present in any table: headline metrics first, then the rest by name."""
    names = {key for table in tables if table for key, value in table.items() if is_number(value)}
    return [m for m in HEADLINE if m in names] + sorted(names.difference(HEADLINE))


def metrics_table(current: dict[str, Any], base: dict[str, Any] | None, base_label: str) -> list[str]:
    lines = [f"| metric | {cell(base_label)} | this branch | change |", "|---|---:|---:|---:|"]
    for metric in ordered_metrics(current, base):
        old = (base or {}).get(metric)
        new = current.get(metric)
        lines.append(f"| {metric} | {fmt(old)} | {fmt(new)} | {delta(metric, old, new)} |")
    return lines


def slices_section(current: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    slices = current.get("slices") or {}
    if not isinstance(slices, dict) or not slices:
        return []
    base_slices = (base or {}).get("slices") or {}
    shown = [m for m in SLICE_METRICS if any(is_number((s or {}).get(m)) for s in slices.values())]
    lines = [
        "<details><summary>Per-slice metrics (change vs base in brackets)</summary>",
        "",
        "| slice | " + " | ".join(shown) + " |",
        "|---|" + "---:|" * len(shown),
    ]
    for name in sorted(slices):
        row, old_row = slices[name] or {}, base_slices.get(name) or {}
        cells = []
        for metric in shown:
            change = delta(metric, old_row.get(metric), row.get(metric)) if old_row else ""
            cells.append(fmt(row.get(metric)) + (f" ({change})" if change and change not in ("–", "±0") else ""))
        lines.append(f"| {cell(name)} | " + " | ".join(cells) + " |")
    return [*lines, "", "</details>"]


def gate_section(gate: dict[str, Any] | None) -> list[str]:
    if gate is None:
        return ["### Gate", "", "The gate did not run (no `reports/gate.json`): see the pipeline log."]
    champion = gate.get("champion")
    if isinstance(champion, dict):
        who = f"champion: {cell(str(champion.get('source', '?')))} `{champion.get('reference', '?')}`"
        if champion.get("location"):  # which registry (tracking server) or git remote it came from
            who += f", from {cell(str(champion['location']))}"
    else:
        who = "no champion yet: absolute thresholds only"
    verdict = "**passed** ✅" if gate.get("passed") else "**failed** ❌"
    lines = [
        "### Gate",
        "",
        f"Gate {verdict} ({who}).",
        "",
        "| check | result | observed | limit | detail |",
        "|---|---|---:|---:|---|",
    ]
    for check in gate.get("checks") or []:
        result = "✅ pass" if check.get("passed") else "❌ FAIL"
        lines.append(
            f"| {cell(str(check.get('name', '?')))} | {result} | {fmt(check.get('observed'))} | "
            f"{fmt(check.get('limit'))} | {cell(str(check.get('detail', '')))} |"
        )
    return lines


def plots_section(plots_dir: Path, run_url: str | None, artifact: str) -> list[str]:
    names = sorted(path.stem for path in plots_dir.glob("*.json")) if plots_dir.is_dir() else []
    if not names:
        return []
    listed = ", ".join(PLOT_NAMES.get(name, name.replace("_", " ")) for name in names)
    where = f"the [`{artifact}` artifact]({run_url}#artifacts)" if run_url else f"the `{artifact}` artifact"
    return [
        "### Plots",
        "",
        f"{listed}: this branch overlaid on the base in `plots_diff/index.html` (`dvc plots diff`), in {where}.",
        "Locally: `dvc plots diff <base> --open`.",
    ]


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def numeric_dvc_diff(markdown: str, max_rows: int = MAX_DVC_DIFF_ROWS) -> str:
    """`dvc metrics diff --md` without its text leaves (check names, details): numbers only, capped."""
    lines = [line for line in markdown.strip().splitlines() if line.startswith("|")]
    if len(lines) < 2:
        return markdown.strip()
    header, rule, rows = lines[0], lines[1], lines[2:]
    kept = []
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        # | Path | Metric | <base> | <new> | Change |: keep the row when a value is a number.
        if any(_numeric(value) for value in cells[2:4]):
            kept.append(row)
    if not kept:
        return "No numeric metric changed."
    note = f"\n\n_({len(kept) - max_rows} more rows in the artifact)_" if len(kept) > max_rows else ""
    return "\n".join([header, rule, *kept[:max_rows]]) + note


def headline(outcome: str, gate: dict[str, Any] | None) -> str:
    if gate is not None and gate.get("passed") and outcome != "failure":
        return "✅ Gate passed: this model can be released after merge"
    if gate is not None and not gate.get("passed"):
        return "❌ Gate failed: this model would not be released"
    if outcome == "failure":
        return "⚠️ The pipeline failed before the gate decided"
    return "ℹ️ No gate decision"


def build_report(
    metrics: dict[str, Any] | None,
    base_metrics: dict[str, Any] | None,
    gate: dict[str, Any] | None,
    *,
    outcome: str = "success",
    base_label: str = "main",
    validation: dict[str, Any] | None = None,
    package: dict[str, Any] | None = None,
    dvc_diff: str | None = None,
    plots_dir: Path | None = None,
    run_url: str | None = None,
    artifact: str = "retrain-reports",
    commit: str | None = None,
) -> str:
    """The whole comment body, marker first."""
    lines = [MARKER, f"## Retrain report — {headline(outcome, gate)}", ""]
    context = f"Commit `{commit[:12]}` compared with `{base_label}`." if commit else f"Compared with `{base_label}`."
    if run_url:
        context += f" [Workflow run]({run_url})."
    lines += [context, ""]
    if outcome == "failure":
        lines += [
            "> **`dvc repro` failed.** The tables below show whatever stages finished; "
            "the job log says which stage stopped and why.",
            "",
        ]
    if validation is not None:
        lines += [
            f"Data: {fmt(validation.get('rows_total'))} rows, {fmt(validation.get('rows_valid'))} valid, "
            f"{fmt(validation.get('rows_quarantined'))} quarantined "
            f"(validation {'passed' if validation.get('passed') else 'FAILED'}).",
            "",
        ]
    overall = (metrics or {}).get("overall")
    if isinstance(overall, dict):
        base_overall = (base_metrics or {}).get("overall")
        base_overall = base_overall if isinstance(base_overall, dict) else None
        label = base_label if base_overall is not None else f"{base_label} (no metrics)"
        lines += ["### Golden-set metrics", "", *metrics_table(overall, base_overall, label), ""]
        latency = (metrics or {}).get("latency")
        if isinstance(latency, dict):
            base_latency = (base_metrics or {}).get("latency") or {}
            lines += [
                "Latency: "
                + ", ".join(
                    f"{name} {fmt(value)} ({delta(name, base_latency.get(name), value)})"
                    for name, value in latency.items()
                    if is_number(value)
                ),
                "",
            ]
        section = slices_section(metrics or {}, base_metrics)
        lines += [*section, ""] if section else []
    else:
        lines += [
            "### Golden-set metrics",
            "",
            "No `reports/metrics.json`: the evaluate stage did not run.",
            "",
        ]
    lines += [*gate_section(gate), ""]
    if package is not None:
        lines += [
            f"Packaged: bento `{package.get('bento_tag')}`, registered model version "
            f"{fmt(package.get('model_version'))}.",
            "",
        ]
    if plots_dir is not None and metrics is not None:
        section = plots_section(plots_dir, run_url, artifact)
        lines += [*section, ""] if section else []
    if dvc_diff and dvc_diff.strip():
        lines += [
            "<details><summary><code>dvc metrics diff</code> (every tracked metric that changed)</summary>",
            "",
            numeric_dvc_diff(dvc_diff),
            "",
            "</details>",
            "",
        ]
    body = "\n".join(lines).rstrip() + "\n"
    if len(body) > MAX_BODY:
        body = body[:MAX_BODY].rsplit("\n", 1)[0] + "\n\n_(report truncated; the full tables are in the artifact)_\n"
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=Path, default=Path("reports"), help="reports folder (default reports)")
    parser.add_argument("--base-rev", default="main", help="git revision to compare with (default main)")
    parser.add_argument("--base-label", help="name of the base in the table (default: --base-rev)")
    parser.add_argument("--dvc-diff", type=Path, help="Markdown from `dvc metrics diff --md`, embedded folded")
    parser.add_argument(
        "--outcome",
        choices=("success", "failure"),
        default="success",
        help="how `dvc repro` ended (default success)",
    )
    parser.add_argument("--run-url", help="link to the workflow run (its artifacts hold the plots)")
    parser.add_argument("--artifact", default="retrain-reports", help="name of the uploaded reports artifact")
    parser.add_argument("--commit", help="commit the report is about")
    parser.add_argument(
        "--started",
        type=Path,
        help="a file touched just before `dvc repro`: when it failed, older reports (committed by an "
        "earlier run) are not this run's and are left out",
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/pr_report.md"), help="where to write")
    args = parser.parse_args(argv)

    reports: Path = args.reports
    dvc_diff = None
    if args.dvc_diff is not None and args.dvc_diff.is_file():
        dvc_diff = args.dvc_diff.read_text(encoding="utf-8")
    fresh = fresh_reader(args.started if args.outcome == "failure" else None)
    metrics_path = (reports / "metrics.json").as_posix()
    body = build_report(
        fresh(reports / "metrics.json"),
        read_json_at_rev(args.base_rev, metrics_path),
        fresh(reports / "gate.json"),
        outcome=args.outcome,
        base_label=args.base_label or args.base_rev,
        validation=fresh(reports / "validation.json"),
        package=fresh(reports / "package.json"),
        dvc_diff=dvc_diff,
        plots_dir=reports / "plots",
        run_url=args.run_url,
        artifact=args.artifact,
        commit=args.commit,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(body, encoding="utf-8")
    print(f"wrote {args.output} ({len(body)} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
