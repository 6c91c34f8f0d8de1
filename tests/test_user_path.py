"""The README's path, walked as a new user walks it, in environments that hold nothing of ours.

1. A fresh virtual environment with only cookiecutter bakes the project (no DVC there).
2. The project's own documented setup (`make setup`) runs in another fresh environment.
3. Then its own tests (`make test`) pass and `dvc repro` runs the pipeline through `package`.

This is the only proof that the template works outside the template's development environment,
so it sits in the `proof` tier that `.ci/run` runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QUIET_ENV, TEMPLATE, assert_tests_passed

pytestmark = pytest.mark.proof

SYSTEM_PATH = os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin"])


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin"


def user_shell(bin_dir: Path, home: Path) -> dict[str, str]:
    """A user's shell with one environment activated: no trace of the template's own venv."""
    return {"PATH": f"{bin_dir}{os.pathsep}{SYSTEM_PATH}", "HOME": str(home), "VIRTUAL_ENV": str(bin_dir.parent),
            "LANG": "C.UTF-8", **QUIET_ENV}


def step(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode} in {cwd}\n"
                             f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}")
    return result.stdout


def test_readme_path_from_a_cookiecutter_only_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # pip's cache is the user's own, so a second run does not download again.
    pip_cache = {"PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))}
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE"):
        if name in os.environ:
            pip_cache[name] = os.environ[name]

    baker = fresh_venv(tmp_path / "cookiecutter-env")
    bake_env = {**user_shell(baker, home), **pip_cache}
    step([str(baker / "pip"), "install", "-q", "cookiecutter"], tmp_path, bake_env, timeout=600)
    step([str(baker / "cookiecutter"), "--no-input", str(TEMPLATE), "-o", str(tmp_path / "out")], tmp_path, bake_env,
         timeout=600)
    project = tmp_path / "out" / "fraud-detection"
    assert (project / ".git").is_dir(), "the bake did not make a git repository"

    own = fresh_venv(tmp_path / "project-env")
    env = {**user_shell(own, home), **pip_cache}
    step(["make", "setup", f"PYTHON={own / 'python'}"], project, env, timeout=1800)
    assert (project / ".dvc" / "config").is_file(), "make setup did not finish the DVC set-up"
    assert (project / "data" / "raw" / "transactions.parquet.dvc").is_file()
    status = step(["git", "status", "--porcelain"], project, env, timeout=60)
    assert status == "", f"make setup left uncommitted changes:\n{status}"

    tests = step(["make", "test", f"PYTHON={own / 'python'}"], project, env, timeout=2400)
    assert_tests_passed(tests)

    repro = step([str(own / "dvc"), "repro"], project, env, timeout=1800)
    for stage in ("validate", "train", "evaluate", "gate", "package"):
        assert f"Running stage '{stage}'" in repro, repro[-3000:]
    package = json.loads((project / "reports" / "package.json").read_text(encoding="utf-8"))
    assert package["gate_passed"] is True and package["bento_tag"]
