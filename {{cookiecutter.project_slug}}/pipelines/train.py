"""DVC stage `train`: validated rows -> models/model.pt, reports/train_metrics.json, an MLflow run.

python pipelines/train.py                       # what `dvc repro train` runs
python pipelines/train.py train.resume=true     # continue a killed run from its last checkpoint
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from {{ cookiecutter.package_name }}.stage import run_stage
from {{ cookiecutter.package_name }}.training.train import train


def main(cfg: DictConfig) -> int:
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(run_stage("train", main))
