"""The MLflow model registry: aliases `challenger` (gate passed) and `champion` (released).

Aliases, not stages: a version moves by pointing an alias at it, and every
move is tagged with who and when.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from ..errors import PipelineError
from ..training.tracking import configure, log_model

CHALLENGER, CHAMPION = "challenger", "champion"


class RegistryError(PipelineError):
    pass


def _client(cfg: DictConfig) -> Any:
    from mlflow import MlflowClient

    configure(cfg)
    return MlflowClient()


def register_challenger(
    cfg: DictConfig, model_path: Path, example: pd.DataFrame, gate_report: dict[str, Any], tags: dict[str, str]
) -> str:
    """Log the approved artifact, register it as a new version and point `challenger` at it."""
    import mlflow

    from ..training.artifact import load_model

    if not gate_report.get("passed"):
        raise RegistryError("refusing to register a model whose gate did not pass")
    name = str(cfg.logger.registered_model_name)
    client = _client(cfg)
    model = load_model(model_path)
    with mlflow.start_run(
        run_name=f"package-{tags.get('git_commit', 'unknown')[:12]}",
        tags={"stage": "package", "train_run_id": str(model.metadata.get("mlflow_run_id"))},
    ):
        model_uri = log_model(model, model_path, example)
    version = mlflow.register_model(model_uri, name, tags={**tags, "gate_passed": "true"})
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return str(version.version)


def promote(cfg: DictConfig, version: str, approved_by: str) -> dict[str, str]:
    """Point `champion` at `version`, only if its gate passed; record who approved and when."""
    from mlflow.exceptions import MlflowException

    name = str(cfg.logger.registered_model_name)
    client = _client(cfg)
    try:
        model_version = client.get_model_version(name, version)
    except MlflowException as error:
        raise RegistryError(f"{name} has no version {version!r}") from error
    if model_version.tags.get("gate_passed") != "true":
        raise RegistryError(f"{name} v{version} did not pass the gate; only gate-passed versions can be champion")
    if not approved_by.strip():
        raise RegistryError("an approver is required (--approved-by)")
    previous = aliased_version(cfg, CHAMPION)
    approved_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, version, "approved_by", approved_by)
    client.set_model_version_tag(name, version, "approved_at", approved_at)
    client.set_registered_model_alias(name, CHAMPION, version)
    return {
        "model": name,
        "version": version,
        "previous_champion": previous or "",
        "approved_by": approved_by,
        "approved_at": approved_at,
    }


def aliased_version(cfg: DictConfig, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(cfg).get_model_version_by_alias(str(cfg.logger.registered_model_name), alias).version)
    except MlflowException:
        return None
