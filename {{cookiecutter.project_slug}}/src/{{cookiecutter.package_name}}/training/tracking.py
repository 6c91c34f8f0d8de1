"""MLflow: where runs are recorded and models registered (a SQLite file by default)."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ..errors import TrackingError
from ..lineage import PROJECT_ID_FILE, environment, git_commit, project_id

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from lightning.pytorch.loggers import MLFlowLogger

    from .artifact import ScoringModel

PROJECT_TAG = "project_id"  # on experiments and registered models: the project they belong to (lineage.project_id)
MODEL_ARTIFACT_NAME = "model"
# Pinned explicitly: letting MLflow infer requirements costs ~10 s a call and drops the torch build label.
PIP_REQUIREMENT_PACKAGES = ("torch", "pandas", "numpy", "pandera", "pyarrow", "mlflow")


def tracking_uri(cfg: DictConfig) -> str:
    """MLFLOW_TRACKING_URI wins (a team server in CI); else the config's, a local SQLite file by default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or str(cfg.logger.tracking_uri)


def resolved_uri(cfg: DictConfig) -> str:
    """The tracking URI as this project resolves it now: a relative SQLite file made absolute, a server as is."""
    uri = tracking_uri(cfg)
    database = sqlite_path(uri)
    return uri if database is None else f"sqlite:///{database.resolve()}"


def shown_uri(uri: str) -> str:
    """`uri` fit for reports and logs: any user or token in it (https://user:token@host) left out."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def artifact_location(cfg: DictConfig) -> str | None:
    """The configured artifact root as an absolute URI, resolved now: a moved project logs inside itself."""
    location = cfg.logger.get("artifact_location")
    if not location:
        return None
    if "://" in str(location):
        return str(location)
    return Path(str(location)).resolve().as_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a local SQLite tracking store, else None (a server owns its own locations)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


# Every column that holds an artifact location under the experiment's root.
LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
)


def relocate_artifacts(database: Path, experiment_id: str, location: str) -> None:
    """Point an experiment, its runs and models at `location` when the project was copied or moved.

    MLflow stores artifact locations as absolute paths and offers no call to change them; without
    this, a copied project would keep writing its artifacts into the folder it was copied from.
    """
    import sqlite3

    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT artifact_location FROM experiments WHERE experiment_id = ?", (experiment_id,)
        ).fetchone()
        old = row[0] if row else None
        if old is None or old == location:
            return
        log.info("MLflow artifacts of this experiment move from %s to %s", old, location)
        for table, column in LOCATION_COLUMNS:
            connection.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                (location, len(old) + 1, len(old), old),
            )


def configure(cfg: DictConfig) -> str:
    """Point MLflow at the configured store and make sure the experiment exists, logging inside the project.

    The experiment and the registered model are claimed for this project (`claim`) before anything is read or
    written there.
    """
    import mlflow
    from mlflow import MlflowClient

    ours = project_id()  # before anything is created in the store: a project without one is refused there
    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    database = sqlite_path(uri)
    location = artifact_location(cfg) if database is not None else None
    experiment = mlflow.get_experiment_by_name(cfg.logger.experiment_name)
    if experiment is None:
        created = mlflow.create_experiment(cfg.logger.experiment_name, artifact_location=location)
        experiment = mlflow.get_experiment(created)
    elif database is not None and location is not None:
        relocate_artifacts(database, experiment.experiment_id, location)
    client, name = MlflowClient(), str(cfg.logger.registered_model_name)
    claim(
        f"experiment {experiment.name!r}",
        experiment.tags,
        lambda key, value: client.set_experiment_tag(experiment.experiment_id, key, value),
        uri,
        ours,
    )
    for registered in client.search_registered_models(filter_string=f"name = '{name}'"):  # none before the first
        claim(
            f"registered model {name!r}",
            registered.tags,
            lambda key, value: client.set_registered_model_tag(name, key, value),
            uri,
            ours,
        )
    return uri


def claim(what: str, tags: Mapping[str, str], set_tag: Callable[[str, str], None], uri: str, ours: str) -> None:
    """Mark `what` as this project's (`ours`: its project id), or refuse it when another project's mark is on it.

    Two bakes of the template share their names (experiment, registered model): on one tracking server
    they would read and move each other's runs and aliases. A project is known by the id committed in it
    (`lineage.project_id`), so every clone and copy of it shares its entries and another bake does not.
    """
    theirs = tags.get(PROJECT_TAG)
    if theirs == ours:
        return
    if theirs is None:  # new, or made before projects were marked: this project's from now on
        set_tag(PROJECT_TAG, ours)
        return
    raise TrackingError(
        f"the {what} at {shown_uri(uri)} belongs to another project ({PROJECT_ID_FILE} {theirs[:12]}, this one "
        f"{ours[:12]}): give this project names of its own, `python tools/params.py "
        "logger.experiment_name=<name> logger.registered_model_name=<name>`"
    )


def experiment_id(cfg: DictConfig) -> str:
    """The project's experiment (created if new): every run of the project goes there, never to "Default"."""
    from mlflow.tracking import MlflowClient

    configure(cfg)
    experiment = MlflowClient().get_experiment_by_name(cfg.logger.experiment_name)
    assert experiment is not None  # created by configure
    return str(experiment.experiment_id)


def start_run(cfg: DictConfig, tags: dict[str, str], stage: str = "train") -> str:
    """Create a stage's run in the project's experiment up front, so every exit path can close it with a status."""
    from mlflow.tracking import MlflowClient

    experiment, commit = experiment_id(cfg), git_commit()  # configure first: the client takes its URI when made
    run = MlflowClient().create_run(
        experiment,
        run_name=f"{stage}-{commit[:12]}",
        tags={"git_commit": commit, "stage": stage, **tags},
    )
    return str(run.info.run_id)


def end_run(run_id: str, status: str, attempts: int = 20) -> None:
    """Close a run as FINISHED, FAILED or KILLED (never left RUNNING).

    A signal can interrupt a metric write half-way, leaving its SQLite transaction open until the
    abandoned session is collected: collect, wait a little and try again rather than leave the run RUNNING.
    """
    import gc
    import time

    from mlflow.tracking import MlflowClient

    for attempt in range(attempts):
        try:
            MlflowClient().set_terminated(run_id, status)
            return
        except Exception as error:  # MLflow wraps SQLAlchemy's OperationalError in more than one type
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            gc.collect()
            time.sleep(0.5)


def close_stale_run(run_id: str) -> bool:
    """Mark a run that was killed without a chance to close itself (kill -9) as KILLED; True if it was."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        status = client.get_run(run_id).info.status
    except MlflowException:
        return False
    if status != "RUNNING":
        return False
    client.set_terminated(run_id, "KILLED")
    return True


def close_stale_runs(cfg: DictConfig, tag: str, value: str) -> list[str]:
    """Close as KILLED the project's RUNNING runs tagged `tag=value`: a killed process named them in its record."""
    from mlflow.tracking import MlflowClient

    experiment = experiment_id(cfg)  # configure first: the client takes its URI when made
    runs = MlflowClient().search_runs([experiment], f"tags.`{tag}` = '{value}' and attributes.status = 'RUNNING'")
    return [run.info.run_id for run in runs if close_stale_run(run.info.run_id)]


def mlflow_logger(cfg: DictConfig, run_id: str, in_features: int) -> MLFlowLogger:
    """Lightning's logger, writing into the run created by `start_run`.

    The run's params are the composed config, flattened (`model/optimizer/lr`), plus the model's input
    width under the same scheme: the data's features decide it, not the config.
    """
    from lightning.pytorch.loggers import MLFlowLogger

    logger = MLFlowLogger(
        experiment_name=cfg.logger.experiment_name, tracking_uri=tracking_uri(cfg), run_id=run_id, log_model=False
    )
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    logger.log_hyperparams({"model/in_features": in_features})
    return logger


def pip_requirements() -> list[str]:
    versions = environment()
    return [f"{name}=={versions[name].split('+')[0]}" for name in PIP_REQUIREMENT_PACKAGES if name in versions]


def log_model(model: ScoringModel, model_path: Path, example: pd.DataFrame) -> str:
    """Log the artifact as an MLflow pyfunc (preprocessing included) into the active run; return its URI."""
    import mlflow

    from .mlflow_model import ScoringPyfunc, scoring_code

    # MLflow warns about pickled python models and integer columns on every call: known and
    # intended here (the package is shipped as code, integers are never missing after validation).
    mlflow_log = logging.getLogger("mlflow")
    level = mlflow_log.level
    mlflow_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
            warnings.simplefilter("ignore")
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT_NAME,
                python_model=ScoringPyfunc(),
                artifacts={"model": str(model_path)},
                code_paths=[str(scoring_code(Path(scratch)))],
                input_example=example,
                pip_requirements=pip_requirements(),
            )
    finally:
        mlflow_log.setLevel(level)
    return str(info.model_uri)


def log_training_run(
    logger: MLFlowLogger,
    config_yaml: str,
    model: ScoringModel,
    model_path: Path,
    example: pd.DataFrame,
    metrics: dict[str, float],
) -> None:
    """Metrics, lineage tags, environment and the model itself, in the run the trainer logged to."""
    import mlflow

    from ..data import LABEL_COLUMN

    with mlflow.start_run(run_id=logger.run_id):
        mlflow.log_metrics({f"final/{k}": float(v) for k, v in metrics.items()})
        tags: dict[str, Any] = {f"data.{name}.md5": info["md5"] for name, info in model.metadata["data"].items()}
        tags.update({f"env.{k}": v for k, v in environment().items()})
        tags["threshold"] = model.threshold
        mlflow.set_tags(tags)
        with tempfile.TemporaryDirectory() as scratch:
            config_path = Path(scratch) / "config.yaml"
            config_path.write_text(config_yaml, encoding="utf-8")
            mlflow.log_artifact(str(config_path))
        log_model(model, model_path, example.drop(columns=[LABEL_COLUMN], errors="ignore"))
