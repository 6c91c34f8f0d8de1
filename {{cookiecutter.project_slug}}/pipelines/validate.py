"""DVC stage `validate`: raw data -> valid rows, quarantine, reports/validation.json.

Imports only what validation needs (polars; no pandas or Pandera while the translated checks
are cached, and no torch, lightning, mlflow or bentoml): start-up is most of this stage's
time on a small file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from {{ cookiecutter.package_name }}.data.validation import validate_file
from {{ cookiecutter.package_name }}.files import write_summary
from {{ cookiecutter.package_name }}.stage import run_stage

HEADLINE = ("passed", "rows_total", "rows_valid", "rows_quarantined", "quarantine_share")


def validate(cfg: DictConfig) -> int:
    settings = cfg.data.validation
    result, report = validate_file(
        cfg.paths.raw,
        valid_path=Path(cfg.paths.validated),
        quarantine_path=Path(cfg.paths.quarantine),
        report_path=Path(cfg.paths.reports) / "validation.json",
        as_of=settings.as_of,
        max_quarantine_share=settings.max_quarantine_share,
        max_failures_listed=settings.max_failures_listed,
        stream_from_mb=settings.stream_from_mb,
        row_group_size=settings.row_group_size,
    )
    write_summary(Path(cfg.paths.metrics) / "validate.json", {key: report[key] for key in HEADLINE})
    print(result.summary())
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(run_stage("validate", validate))
