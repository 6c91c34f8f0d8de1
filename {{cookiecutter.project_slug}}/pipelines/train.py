"""DVC stage `train`: validated rows -> models/model.pt, reports/train_metrics.json, an MLflow run.

python pipelines/train.py                       # what `dvc repro train` runs
python pipelines/train.py train.resume=true     # continue a killed run from its last checkpoint
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from {{ cookiecutter.package_name }}.data.validation import require_validated
from {{ cookiecutter.package_name }}.stage import run_stage
from {{ cookiecutter.package_name }}.training.train import train


def main(cfg: DictConfig) -> int:
    require_validated(Path(cfg.paths.reports) / "validation.json", Path(cfg.paths.validated))
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(run_stage("train", main))
