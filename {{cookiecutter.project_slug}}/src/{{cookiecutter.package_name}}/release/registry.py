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
from ..training.tracking import configure, experiment_id, log_model

CHALLENGER, CHAMPION = "challenger", "champion"
BENTO_TAG = "bento_tag"  # a version is registered with the bento built for it, never before
PACKAGE_JOURNAL = "package_journal"  # the journal id of the package run that logged and registered it


class RegistryError(PipelineError):
    pass


def _client(cfg: DictConfig) -> Any:
    from mlflow import MlflowClient

    configure(cfg)
    return MlflowClient()


def register_version(
    cfg: DictConfig, model_path: Path, example: pd.DataFrame, tags: dict[str, str], bento_tag: str
) -> str:
    """Log the model in a package run of the project's experiment, then register it with its built bento.

    Registration is the last write before the alias and carries the bento's tag, so every version in the
    registry is one whose bento was built; a run killed before it leaves no version at all.
    """
    import mlflow

    from ..lineage import file_md5
    from ..training.artifact import load_model
    from ..training.tracking import start_run

    name = str(cfg.logger.registered_model_name)
    run_tags = {"train_run_id": tags.get("train_run_id", "unknown"), PACKAGE_JOURNAL: tags.get(PACKAGE_JOURNAL, "")}
    run_id = start_run(cfg, run_tags, stage="package")
    with mlflow.start_run(run_id=run_id):  # ends FINISHED, or FAILED on an error; a kill -9 is closed by `recover`
        model_uri = log_model(load_model(model_path), model_path, example)
    version_tags = {
        **tags,
        "model_md5": tags.get("model_md5") or file_md5(model_path),  # what the champion lookup checks the bytes by
        BENTO_TAG: bento_tag,
        "gate_passed": "true",
        "package_run_id": run_id,
    }
    return str(mlflow.register_model(model_uri, name, tags=version_tags).version)


def version_of_bento(cfg: DictConfig, bento_tag: str) -> str | None:
    """The registry version registered with this bento, None when its package run never got that far."""
    name = str(cfg.logger.registered_model_name)
    versions = _client(cfg).search_model_versions(f"name='{name}' and tags.{BENTO_TAG} = '{bento_tag}'")
    return str(versions[0].version) if versions else None


def set_challenger(cfg: DictConfig, version: str) -> None:
    """The commit point of `package`: point `challenger` at a registered (so packaged) version."""
    _client(cfg).set_registered_model_alias(str(cfg.logger.registered_model_name), CHALLENGER, version)


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
    version = register_version(cfg, model_path, example, tags, bento_tag)
    set_challenger(cfg, version)
    return version


def training_run(cfg: DictConfig, model_md5: str) -> dict[str, Any]:
    """Lineage of the model with this md5 from the project's latest training run: run id, commit, time, environment.

    Only this project's experiment: another project on the same server trains the same bytes from the same data.
    """
    from mlflow import MlflowClient

    experiment = experiment_id(cfg)  # configure first: the client takes its URI when made
    runs = MlflowClient().search_runs(
        [experiment], f"tags.model_md5 = '{model_md5}' and tags.stage = 'train'", order_by=["start_time DESC"]
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
        raise RegistryError(f"{name} v{version} has no bento (it was not registered by `package`); package it first")
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
