"""DVC stage `package`: a gate-passed model -> registry alias `challenger`, BentoML model, model card, bento.

Refuses by itself when reports/gate.json does not say passed, even if run alone.
Containerise the result where a Docker engine exists: `bentoml containerize <bento_tag>`.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from {{ cookiecutter.package_name }}.release.package import package
from {{ cookiecutter.package_name }}.stage import run_stage


def main(cfg: DictConfig) -> int:
    result = package(cfg)
    print(f"registered version {result['model_version']} as challenger; built bento {result['bento_tag']}")
    print("model card: reports/model_card.md, reports/model_card.html")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage("package", main))
