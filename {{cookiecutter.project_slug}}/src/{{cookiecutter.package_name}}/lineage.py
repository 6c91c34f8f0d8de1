"""Where a model came from: git commit, data versions, software environment (recorded beside it)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

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


def project_first_commit(root: Path = Path(".")) -> str | None:
    """The project's first commit: the same in every clone and copy of it, another for every bake. None outside git."""
    try:
        roots = subprocess.run(
            ["git", "rev-list", "--max-parents=0", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return min(roots) if roots else None  # histories merged from several roots: the same pick in every clone


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
