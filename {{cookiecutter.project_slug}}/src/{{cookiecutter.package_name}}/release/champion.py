"""Find the champion to compare a candidate with: the released model.

Order (gate.champion.source=auto): the MLflow registry alias `champion` when
the registry has one; else the model that dvc.lock pins at git rev
`gate.champion.rev` (main by default), fetched through git and the DVC
remote: no always-on server needed. The candidate's own commit is never its
champion: when `rev` is the commit being judged and pins the candidate, its
first parent (the state before this change) is used.

Fails closed: None ("first release") only when the registry has no
`champion` alias AND the rev pins no model (no dvc.lock there, or no commit
yet). Anything else that goes wrong raises ChampionError with the reason.
The champion found says where it came from (`location`: the tracking server's
URI, or git and the DVC remote), and gate.json records it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from omegaconf import DictConfig

from ..errors import PipelineError

log = logging.getLogger(__name__)
SOURCES = ("auto", "registry", "git", "none")


class ChampionError(PipelineError):
    """There is (or may be) a champion, but it cannot be found or loaded: the gate fails."""


@dataclasses.dataclass
class Champion:
    source: str
    reference: str  # registry version or git rev
    location: str  # the registry's tracking URI, or "git and the DVC remote"
    score: Callable[[pd.DataFrame], np.ndarray]
    threshold: float
    model_md5: str | None = None
    signature: str | None = None  # the feature signature it was trained under (None: unknown layout)

    def describe(self) -> dict[str, str | None]:
        return {
            "source": self.source,
            "reference": self.reference,
            "location": self.location,
            "model_md5": self.model_md5,
        }


def resolve_champion(cfg: DictConfig, candidate_md5: str) -> Champion | None:
    source = str(cfg.gate.champion.source)
    if source not in SOURCES:
        raise ChampionError(f"gate.champion.source={source!r}: expected one of {', '.join(SOURCES)}")
    if source == "none":
        return None
    if source in ("auto", "registry"):
        champion = from_registry(cfg)
        if champion is not None or source == "registry":
            return champion
    return from_git(str(cfg.paths.model), str(cfg.gate.champion.rev), candidate_md5)


def _load_scoring(
    data: bytes, expected_md5: str | None, where: str
) -> tuple[Callable[..., np.ndarray], float, str | None]:
    from ..training.artifact import load_model

    actual = hashlib.md5(data).hexdigest()
    if expected_md5 and actual != expected_md5:
        raise ChampionError(f"champion {where}: fetched model has md5 {actual}, expected {expected_md5}")
    try:
        model = load_model(data)
    except (ValueError, RuntimeError, KeyError) as error:
        raise ChampionError(f"champion {where} is not a loadable model artifact: {error}") from error
    return model.predict_proba, model.threshold, model.signature


def from_registry(cfg: DictConfig) -> Champion | None:
    """The version the `champion` alias points at; None when the model or the alias does not exist."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ..training.tracking import configure, shown_uri, tracking_uri

    name = str(cfg.logger.registered_model_name)
    uri = tracking_uri(cfg)
    location = shown_uri(uri)
    try:
        configure(cfg)
        client = MlflowClient()
        try:
            registered = client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        version = registered.aliases.get("champion")
        if version is None:
            return None
        model_version = client.get_model_version(name, str(version))
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=scratch))
            files = sorted(local.glob("artifacts/*.pt"))
            if len(files) != 1:
                raise ChampionError(f"registry {name} v{version}: expected one artifacts/*.pt, found {len(files)}")
            data = files[0].read_bytes()
    except (MlflowException, OSError) as error:
        # MLflow's message repeats the URI, with any token in it: gate.json and the PR comment show neither.
        reason = str(error).replace(uri, location)
        raise ChampionError(
            f"the model registry could not be read ({name}@champion at {location}): {reason}"
        ) from error
    md5 = model_version.tags.get("model_md5")
    score, threshold, signature = _load_scoring(data, md5, f"{name} v{version}")
    return Champion("registry", f"{name} v{version}", location, score, threshold, md5, signature)


def _git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def _resolve_rev(rev: str) -> tuple[str, str] | None:
    """(name, sha) of `rev` or origin/`rev`; None when the repository has no commit at all."""
    if _git("rev-parse", "--verify", "--quiet", "HEAD^{commit}") is None:
        return None
    for name in (rev, f"origin/{rev}"):
        sha = _git("rev-parse", "--verify", "--quiet", name + "^{commit}")
        if sha:
            return name, sha
    raise ChampionError(f"git rev {rev!r} not found (nor origin/{rev}): check gate.champion.rev")


def from_git(model_path: str, rev: str, candidate_md5: str) -> Champion | None:
    """The model dvc.lock pins at `rev`; None only when that commit has no dvc.lock (nothing released)."""
    resolved = _resolve_rev(rev)
    if resolved is None:
        log.info("no commit yet: no champion")
        return None
    name, sha = resolved
    if sha == _git("rev-parse", "HEAD") and _pinned_md5(sha, model_path) == candidate_md5:
        parent = _git("rev-parse", "--verify", "--quiet", f"{sha}^1")
        if parent is None:
            return None  # the candidate is the first model ever committed
        name, sha = f"{name}^1", parent
    md5 = _pinned_md5(sha, model_path)
    if md5 is None:
        log.info("%s has no dvc.lock: no champion yet", name)
        return None
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        with dvc.api.open(model_path, rev=sha, mode="rb") as handle:
            data = handle.read()
    except (DvcException, OSError) as error:
        raise ChampionError(
            f"the champion {model_path}@{name} ({md5}) cannot be fetched: {type(error).__name__}: {error} "
            "(is the DVC remote reachable and was the model pushed?)"
        ) from error
    score, threshold, signature = _load_scoring(data, md5, f"{model_path}@{name}")
    return Champion("git", f"{name}@{sha[:12]}", "git and the DVC remote", score, threshold, md5, signature)


def _pinned_md5(sha: str, model_path: str) -> str | None:
    """md5 that dvc.lock at `sha` pins for `model_path`; None when there is no dvc.lock there."""
    if _git("cat-file", "-e", f"{sha}:dvc.lock") is None:
        return None
    lock_text = _git("show", f"{sha}:dvc.lock")
    lock = yaml.safe_load(lock_text or "") or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == model_path:
                return str(out["md5"])
    raise ChampionError(f"dvc.lock at {sha[:12]} pins no {model_path}: check paths.model and the train stage")
