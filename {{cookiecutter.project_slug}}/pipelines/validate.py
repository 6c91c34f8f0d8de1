"""DVC stage `validate`: raw data -> valid rows, quarantine, reports/validation.json.

Imports only what validation needs (no torch, lightning, mlflow or bentoml): start-up is
most of this stage's time on a small file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from {{ cookiecutter.package_name }}.data.validation import read_raw, validate_frame, write_outputs
from {{ cookiecutter.package_name }}.files import write_summary
from {{ cookiecutter.package_name }}.stage import run_stage

HEADLINE = ("passed", "rows_total", "rows_valid", "rows_quarantined", "quarantine_share")


def validate(cfg: DictConfig) -> int:
    result = validate_frame(
        read_raw(cfg.paths.raw),
        as_of=cfg.data.validation.as_of,
        max_quarantine_share=cfg.data.validation.max_quarantine_share,
        max_failures_listed=cfg.data.validation.max_failures_listed,
    )
    write_outputs(
        result,
        valid_path=Path(cfg.paths.validated),
        quarantine_path=Path(cfg.paths.quarantine),
        report_path=Path(cfg.paths.reports) / "validation.json",
    )
    write_summary(
        Path(cfg.paths.metrics) / "validate.json",
        {key: result.report()[key] for key in HEADLINE},
    )
    print(result.summary())
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(run_stage("validate", validate))
