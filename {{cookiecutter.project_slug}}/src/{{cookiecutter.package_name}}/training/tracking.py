"""MLflow: where runs are recorded and models registered (a SQLite file by default)."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ..lineage import environment, git_commit

if TYPE_CHECKING:
    from lightning.pytorch.loggers import MLFlowLogger

    from .artifact import ScoringModel

MODEL_ARTIFACT_NAME = "model"
# Pinned explicitly: letting MLflow infer requirements costs ~10 s a call and drops the torch build label.
PIP_REQUIREMENT_PACKAGES = ("torch", "pandas", "numpy", "pandera", "pyarrow", "mlflow")


def tracking_uri(cfg: DictConfig) -> str:
    """MLFLOW_TRACKING_URI wins (a team server in CI); else the config's, a local SQLite file by default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or str(cfg.logger.tracking_uri)


def _artifact_location(uri: str) -> str | None:
    # With a SQLite store, keep artifacts beside it in the project rather than in the working directory.
    return Path("mlartifacts").resolve().as_uri() if uri.startswith("sqlite:") else None


def configure(cfg: DictConfig) -> str:
    import mlflow

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(cfg.logger.experiment_name) is None:
        mlflow.create_experiment(cfg.logger.experiment_name, artifact_location=_artifact_location(uri))
    return uri


def mlflow_logger(cfg: DictConfig) -> MLFlowLogger:
    from lightning.pytorch.loggers import MLFlowLogger

    uri = configure(cfg)
    commit = git_commit()
    logger = MLFlowLogger(
        experiment_name=cfg.logger.experiment_name,
        tracking_uri=uri,
        run_name=f"train-{commit[:12]}",
        tags={"git_commit": commit, "stage": "train"},
        log_model=False,
    )
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    return logger


def pip_requirements() -> list[str]:
    versions = environment()
    return [f"{name}=={versions[name].split('+')[0]}" for name in PIP_REQUIREMENT_PACKAGES if name in versions]


def log_model(model: ScoringModel, model_path: Path, example: pd.DataFrame) -> str:
    """Log the artifact as an MLflow pyfunc (preprocessing included) into the active run; return its URI."""
    import mlflow

    from .mlflow_model import FraudPyfunc, scoring_code

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
                python_model=FraudPyfunc(),
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
    cfg: DictConfig,
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
            config_path.write_text(OmegaConf.to_yaml(cfg), encoding="utf-8")
            mlflow.log_artifact(str(config_path))
        log_model(model, model_path, example.drop(columns=[LABEL_COLUMN], errors="ignore"))
