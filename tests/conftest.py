"""Bake helpers shared by the template's tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
CONTEXT = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
QUIET_ENV = {"DVC_NO_ANALYTICS": "1", "BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
             "DO_NOT_TRACK": "true", "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
             "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com"}
os.environ.update(QUIET_ENV)
# The tools of this interpreter's environment (dvc, act, pre-commit, bentoml) first on PATH,
# also when pytest runs as `.venv/bin/python -m pytest` without an activated environment.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def bake(output_dir: Path, **answers: Any) -> Path:
    """Bake the template with `answers` over the defaults; return the project folder."""
    path = cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output_dir), extra_context=answers)
    return Path(path)


def run(command: list[str] | str, cwd: Path, timeout: float = 900, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in a baked project; on failure show its output, not just an exit code."""
    # Several baked projects share one interpreter: put this project's src/ first on the path so
    # its own code runs whichever project was `pip install -e`d last.
    source = {"PYTHONPATH": str(cwd / "src")} if (cwd / "src").is_dir() else {}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            shell=isinstance(command, str), env={**os.environ, **source, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode} in {cwd}\n"
                             f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}")
    return result


def install(project: Path) -> None:
    """`pip install -e '.[dev]'` into this interpreter, pinned by the project's constraints."""
    run([sys.executable, "-m", "pip", "install", "-q", "-c", "constraints.txt", "-e", ".[dev]"], cwd=project)


@pytest.fixture(scope="session")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default bake, installed, with its first data version committed: a user's first minute."""
    project = bake(tmp_path_factory.mktemp("default"))
    install(project)
    run([sys.executable, "tools/data_version.py", "--commit"], cwd=project)
    return project


@pytest.fixture
def project_copy(default_project: Path, tmp_path: Path) -> Path:
    """A private copy of the default project (git, DVC cache and data included) for tests that change it.

    The package stays installed from `default_project`'s src/: edit code in the copy and the
    change does not take effect.
    """
    import shutil

    copy = tmp_path / default_project.name
    shutil.copytree(default_project, copy, symlinks=True)
    return copy
