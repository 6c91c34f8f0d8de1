"""Where a model came from: git commit, data versions, software environment (recorded beside it)."""

from __future__ import annotations

import hashlib
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from .errors import ProjectIdentityError

TRACKED_PACKAGES = ("torch", "lightning", "pandas", "pandera", "mlflow", "dvc", "bentoml", "numpy")


def git_commit(root: Path = Path(".")) -> str:
    """HEAD's sha, with '-dirty' when tracked files changed; 'unknown' outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


# Written once when the project is made (tools/init_project.py, which the bake runs) and committed: every
# clone and copy of the project carries it, and no other project has it.
PROJECT_ID_FILE = Path(".project-id")
PROJECT_ID_PATTERN = re.compile(r"[0-9a-f]{32}")


def project_id(root: Path = Path(".")) -> str:
    """The project's identity in stores it shares with other projects (an MLflow server, a BentoML store).

    A random id, not a commit: two bakes made in the same second with the same answers have the same
    first commit, but never the same id.
    """
    path = root / PROJECT_ID_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ProjectIdentityError(
            f"{path} is missing: it names this project on shared stores. Run `python tools/init_project.py` "
            "(`make setup` does) and commit the file it writes"
        ) from None
    if PROJECT_ID_PATTERN.fullmatch(text) is None:
        raise ProjectIdentityError(
            f"{path} holds {text[:40]!r}, not a project id (32 hex digits): restore it from git "
            f"(`git checkout -- {PROJECT_ID_FILE}`)"
        )
    return text


def file_md5(path: str | Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dvc_pointer_md5(data_path: str | Path) -> str | None:
    """The md5 DVC recorded for `data_path` in its `.dvc` pointer (the data version in git)."""
    pointer = Path(f"{data_path}.dvc")
    if not pointer.exists():
        return None
    outs = (yaml.safe_load(pointer.read_text(encoding="utf-8")) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def data_versions(paths: dict[str, str]) -> dict[str, dict[str, Any]]:
    """md5 of each file as it is now, beside the version its DVC pointer names."""
    versions: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        if Path(path).exists():
            versions[name] = {"path": str(path), "md5": file_md5(path), "dvc_md5": dvc_pointer_md5(path)}
    return versions


def environment() -> dict[str, str]:
    versions = {}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {"python": sys.version.split()[0], "platform": platform.platform(), **versions}


def record_lineage(run_id: str, model_path: Path) -> None:
    """Tag the training run with the model's md5: the key that finds run, commit and time again.

    Lineage lives beside the model (the run already carries git_commit, start time and env.* tags),
    never inside it, so model.pt stays a pure function of code, data and params.
    """
    from mlflow import MlflowClient

    MlflowClient().set_tag(run_id, "model_md5", file_md5(model_path))
