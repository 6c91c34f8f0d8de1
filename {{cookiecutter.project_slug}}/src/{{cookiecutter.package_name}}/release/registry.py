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
BENTO_TAG = "bento_tag"  # set on a version once its bento is built: the mark of a finished `package`


class RegistryError(PipelineError):
    pass


def _client(cfg: DictConfig) -> Any:
    from mlflow import MlflowClient

    configure(cfg)
    return MlflowClient()


def _leftover_version(client: Any, name: str, model_md5: str) -> str | None:
    """A version of this model that a crashed `package` registered but never finished.

    The bento tag is set before any alias, so a version without one never had an alias either.
    """
    for version in client.search_model_versions(f"name='{name}'"):
        if version.tags.get("model_md5") == model_md5 and BENTO_TAG not in version.tags:
            return str(version.version)
    return None


def reserve_version(cfg: DictConfig, model_path: Path, example: pd.DataFrame, tags: dict[str, str]) -> str:
    """A registry version for the model, with no alias yet: a crash's leftover is reused, else a new one.

    Nothing points at it until `set_challenger`, so a crash after this leaves no alias on a half-packaged model.
    """
    import mlflow

    from ..lineage import file_md5
    from ..training.artifact import load_model

    name = str(cfg.logger.registered_model_name)
    client = _client(cfg)
    tags = {**tags, "model_md5": tags.get("model_md5") or file_md5(model_path), "gate_passed": "true"}
    leftover = _leftover_version(client, name, tags["model_md5"])
    if leftover is not None:
        return leftover
    with mlflow.start_run(
        run_name=f"package-{tags.get('git_commit', 'unknown')[:12]}",
        tags={"stage": "package", "train_run_id": tags.get("train_run_id", "unknown")},
    ):
        model_uri = log_model(load_model(model_path), model_path, example)
    return str(mlflow.register_model(model_uri, name, tags=tags).version)


def set_challenger(cfg: DictConfig, version: str, bento_tag: str) -> None:
    """The commit point of `package`: record the bento on the version, then point `challenger` at it."""
    name = str(cfg.logger.registered_model_name)
    client = _client(cfg)
    client.set_model_version_tag(name, version, BENTO_TAG, bento_tag)
    client.set_registered_model_alias(name, CHALLENGER, version)


def register_challenger(
    cfg: DictConfig,
    model_path: Path,
    example: pd.DataFrame,
    gate_report: dict[str, Any],
    tags: dict[str, str],
    bento_tag: str,
) -> str:
    """Register an approved artifact whose bento is built, and point `challenger` at it in one call."""
    if not gate_report.get("passed"):
        raise RegistryError("refusing to register a model whose gate did not pass")
    version = reserve_version(cfg, model_path, example, tags)
    set_challenger(cfg, version, bento_tag)
    return version


def training_run(cfg: DictConfig, model_md5: str) -> dict[str, Any]:
    """Lineage of the model with this md5 from its latest training run: run id, commit, time, environment."""
    from mlflow import MlflowClient

    configure(cfg)
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, f"tags.model_md5 = '{model_md5}' and tags.stage = 'train'", order_by=["start_time DESC"]
    )
    if not runs:
        return {"mlflow_run_id": "n/a", "git_commit": "n/a", "trained_at": "n/a", "environment": {}}
    run = runs[0]
    started = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC).isoformat(timespec="seconds")
    return {
        "mlflow_run_id": run.info.run_id,
        "git_commit": run.data.tags.get("git_commit", "n/a"),
        "trained_at": started,
        "environment": {k[4:]: v for k, v in run.data.tags.items() if k.startswith("env.")},
    }


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
    if BENTO_TAG not in model_version.tags:
        raise RegistryError(f"{name} v{version} has no bento (its package run did not finish); package it first")
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
