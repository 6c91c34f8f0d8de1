"""Find the champion to compare a candidate with: the released model, or main's.

Order (gate.champion.source=auto): the MLflow registry alias `champion` when
the registry has one; else the model that dvc.lock pins at git rev
`gate.champion.rev` (main by default), fetched through git and the DVC
remote: no always-on server needed. None when there is no champion yet.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
from collections.abc import Callable

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig

from ..errors import PipelineError
from ..training.artifact import load_model

log = logging.getLogger(__name__)
SOURCES = ("auto", "registry", "git", "none")


@dataclasses.dataclass
class Champion:
    source: str
    reference: str  # registry version or git rev
    score: Callable[[pd.DataFrame], np.ndarray]
    model_md5: str | None = None

    def describe(self) -> dict[str, str | None]:
        return {"source": self.source, "reference": self.reference, "model_md5": self.model_md5}


def resolve_champion(cfg: DictConfig) -> Champion | None:
    source = str(cfg.gate.champion.source)
    if source not in SOURCES:
        raise PipelineError(f"gate.champion.source={source!r}: expected one of {', '.join(SOURCES)}")
    if source == "none":
        return None
    if source in ("auto", "registry"):
        champion = from_registry(cfg)
        if champion is not None or source == "registry":
            return champion
    return from_git(cfg.paths.model, str(cfg.gate.champion.rev))


def from_registry(cfg: DictConfig) -> Champion | None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ..training.tracking import configure

    configure(cfg)
    name = str(cfg.logger.registered_model_name)
    try:
        version = MlflowClient().get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    return Champion(
        "registry",
        f"{name} v{version.version}",
        lambda frame: np.asarray(pyfunc.predict(frame)),
        version.tags.get("model_md5"),
    )


def _git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def from_git(model_path: str, rev: str) -> Champion | None:
    """The model dvc.lock pins at `rev` (or origin/`rev`, as CI checkouts have it)."""
    import dvc.api

    for candidate in (rev, f"origin/{rev}"):
        sha = _git("rev-parse", "--verify", "--quiet", candidate + "^{commit}")
        if sha:
            break
    else:
        log.info("no git rev %r: no champion yet", rev)
        return None
    lock_text = _git("show", f"{sha.strip()}:dvc.lock")
    md5 = _locked_md5(lock_text, model_path) if lock_text else None
    if md5 is None:
        log.info("dvc.lock at %s pins no %s: no champion yet", rev, model_path)
        return None
    with dvc.api.open(model_path, rev=sha.strip(), mode="rb") as handle:
        model = load_model(handle.read())
    return Champion("git", f"{candidate}@{sha.strip()[:12]}", model.predict_proba, md5)


def _locked_md5(lock_text: str, path: str) -> str | None:
    lock = yaml.safe_load(lock_text) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == path:
                return out.get("md5")
    return None
