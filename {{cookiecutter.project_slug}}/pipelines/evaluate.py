"""DVC stage `evaluate`: the trained model on the golden set -> reports/metrics.json, predictions, plots."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from {{ cookiecutter.package_name }}.evaluation.evaluate import evaluate, load_golden, write_evaluation
from {{ cookiecutter.package_name }}.files import write_summary
from {{ cookiecutter.package_name }}.stage import run_stage
from {{ cookiecutter.package_name }}.training.artifact import load_model


def main(cfg: DictConfig) -> int:
    model = load_model(cfg.paths.model)
    behaviour = OmegaConf.to_container(cfg.dataset.behaviour)  # the declared checks, as plain data
    assert isinstance(behaviour, dict)
    report, predictions, plots = evaluate(model, load_golden(cfg.paths.golden), behaviour)
    write_evaluation(report, predictions, plots, Path(cfg.paths.reports), Path(cfg.paths.plots))
    overall = report["overall"]
    headline = {key: overall[key] for key in ("roc_auc", "pr_auc", "brier", "recall", "precision")}
    headline["ms_row_p99"] = report["latency"]["ms_single_row_p99"]
    write_summary(Path(cfg.paths.metrics) / "evaluate.json", headline)
    print(
        f"golden set: {overall['rows']} rows, roc_auc={overall['roc_auc']:.4f} pr_auc={overall['pr_auc']:.4f} "
        f"brier={overall['brier']:.4f} p99 single row={headline['ms_row_p99']:.2f} ms"
    )
    for name, check in report["behavioural"].items():
        print(f"  behaviour {name} ({check['kind']}): {check['observed']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage("evaluate", main))
