"""Shared fixtures: small generated frames, and throwaway copies of the project for pipeline tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.data import generate, sample_golden, sample_rows
from {{ cookiecutter.package_name }}.stage import quiet_environment

PROJECT = Path(__file__).resolve().parents[1]
quiet_environment()
# Commits inside test workspaces are the tests' own bookkeeping: the git hooks `make setup` installs
# (pre-commit: lint, params drift, DVC) judge the user's commits, not these.
os.environ.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "core.hooksPath", "GIT_CONFIG_VALUE_0": os.devnull})
# This environment's tools (dvc, bentoml) first on PATH, also without an activated environment.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# Never the user's project: copies take code, config and git history, not data, runs or caches.
SKIP_AT_ROOT = {".venv", "venv", "mlflow.db", "mlartifacts", "mlruns", "data", "models", "reports", "tmp"}
SKIP_ANYWHERE = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".state", "cache", "tmp"}


def _copy_ignore(directory: str, names: list[str]) -> set[str]:
    skipped = {name for name in names if name in SKIP_ANYWHERE}
    return skipped | (set(names) & SKIP_AT_ROOT if Path(directory) == PROJECT else set())


# The bundled example is this project's dataset while its generator is (tools/adopt_data.py replaces it).
EXAMPLE_IS_THE_DATASET = hasattr(generate, "generate_transactions")
EXAMPLE_GONE = "the bundled example dataset was replaced by this project's own (conf/dataset/): its tests do not apply"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reverse-order",
        action="store_true",
        help="run the test files last to first, each file's tests in their own order: shows a file that leans on "
        "what another left in this process (a module whose tests walk one workspace through the stages keeps its walk)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Spark tests run only where -m names them (`-m spark`): they need pyspark and Java, which `.[dev]` leaves out.

    This one place keeps them out of every other selection (`-m "not slow"`, CI's tiers, a bare `pytest`).
    With --reverse-order the files run last to first.
    Tests marked `example` test the bundled example's own columns: skipped, saying why, once it is replaced.
    """
    if config.getoption("reverse_order"):
        position = {path: index for index, path in enumerate(dict.fromkeys(item.path for item in items))}
        items.sort(key=lambda item: -position[item.path])  # stable: each file keeps its own order
    if not EXAMPLE_IS_THE_DATASET:
        for item in items:
            if item.get_closest_marker("example"):
                item.add_marker(pytest.mark.skip(reason=EXAMPLE_GONE))
    if "spark" in (config.getoption("markexpr") or ""):
        return
    spark = [item for item in items if item.get_closest_marker("spark")]
    if spark:
        config.hook.pytest_deselected(items=spark)
        items[:] = [item for item in items if not item.get_closest_marker("spark")]


# Where `training.tracking.configure` points MLflow: module globals of this process, copied by MLflow into these
# variables for child processes. A test that calls configure() here would leave later tests on its store.
MLFLOW_STORE_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def mlflow_store_restored() -> Iterator[None]:
    """Every test starts as the session did: MLflow pointed at no store an earlier test chose, in any order."""
    before = {name: os.environ.get(name) for name in MLFLOW_STORE_VARIABLES}
    yield
    if "mlflow" in sys.modules:  # never imported: nothing was pointed anywhere
        import mlflow

        # None (which MLflow handles, though its hints say str): resolved again from the environment, as at the start.
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def transactions() -> pd.DataFrame:
    """Labelled valid rows of this project's dataset (its generate.py: the example's generator, or rows drawn
    from an adopted schema)."""
    return sample_rows(4000, seed=3)


@pytest.fixture(scope="session")
def golden() -> pd.DataFrame:
    return sample_golden(3000)


def workspace_env(cwd: Path) -> dict[str, str]:
    """The environment of a command in a project copy: that copy's src/ first on the path, its own stores."""
    return {
        **os.environ,
        "PYTHONPATH": str(cwd / "src"),
        "BENTOML_HOME": str(cwd / "tmp" / "bentoml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}",
    }


def run(
    command: list[str], cwd: Path, check: bool = True, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run in a project copy (`workspace_env`, plus `env`); show the output when it fails."""
    environment = {**workspace_env(cwd), **(env or {})}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n--- stdout ---\n"
            f"{result.stdout[-5000:]}\n--- stderr ---\n{result.stderr[-5000:]}"
        )
    return result


def make_workspace(destination: Path, rows: int = 20_000) -> Path:
    """A copy of this project with its own git history, DVC cache, remote and a fresh small data version."""
    workspace = destination / PROJECT.name
    shutil.copytree(PROJECT, workspace, ignore=_copy_ignore, symlinks=True)
    (workspace / "reports").mkdir(exist_ok=True)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    if not (workspace / ".git").exists():
        run(["git", "init", "-q", "-b", "main"], workspace)
    run(["dvc", "config", "--local", "cache.dir", str(workspace / ".dvc" / "cache")], workspace)
    run(["dvc", "remote", "add", "--local", "-f", "storage", str(destination / "remote")], workspace)
    run(["dvc", "remote", "default", "--local", "storage"], workspace)
    write_data_version(workspace, rows)
    run(["git", "add", "-A"], workspace)
    run([*git, "commit", "-q", "-m", "test workspace", "--allow-empty"], workspace)
    return workspace


def write_data_version(workspace: Path, rows: int) -> None:
    """A first data version in the copy: the example's own tool (spoilt rows included), else sample rows."""
    if EXAMPLE_IS_THE_DATASET:
        run([sys.executable, "tools/data_version.py", "--rows", str(rows), "--golden"], workspace)
        return
    import yaml

    paths = yaml.safe_load((workspace / "params.yaml").read_text(encoding="utf-8"))["paths"]
    for path, frame in ((paths["raw"], sample_rows(rows, seed=1)), (paths["golden"], sample_golden(rows // 4))):
        (workspace / path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(workspace / path, index=False)
    run([sys.executable, "-m", "dvc", "add", paths["raw"], paths["golden"]], workspace)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project copy shared by the tests of a module (they run its stages in order)."""
    return make_workspace(tmp_path_factory.mktemp("workspace"))


@pytest.fixture(scope="session")
def packaged_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy taken through the whole pipeline (fast config): a real bento in its own store."""
    workspace = make_workspace(tmp_path_factory.mktemp("packaged"), rows=20_000)
    run([sys.executable, "tools/params.py", "debug=fast"], workspace)
    run(["dvc", "repro"], workspace, timeout=900)
    return workspace
