"""Bake helpers shared by the template's tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
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


def layered_env(project: Path) -> Path:
    """The project installed (`pip install -e '.[dev]'`) into a venv of its own; return that venv's python.

    The venv sees this environment's packages through a .pth file, so nothing is downloaded, and the
    editable install lands in the project's venv only: the template's environment, and any project
    a user installed into it, are left as they were.
    """
    venv = project.parent / f"{project.name}-venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        purelib = subprocess.run([str(venv / "bin" / "python"), "-c", where],
                                 capture_output=True, text=True, check=True).stdout.strip()
        ours = sysconfig.get_paths()["purelib"]
        pth = Path(purelib) / "zz_template_env.pth"
        pth.write_text(f"import site; site.addsitedir({ours!r})\n", encoding="utf-8")
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", "."], cwd=project)
    return python


@pytest.fixture(scope="session")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default bake, installed, with its first data version committed: a user's first minute."""
    project = bake(tmp_path_factory.mktemp("default"))
    layered_env(project)
    run([sys.executable, "tools/data_version.py", "--commit"], cwd=project)
    return project


@pytest.fixture
def project_copy(default_project: Path, tmp_path: Path) -> Path:
    """A private copy of the default project (git, DVC cache and data included) for tests that change it.

    Commands run through `run` import the copy's own src/ first (PYTHONPATH).
    """
    import shutil

    copy = tmp_path / default_project.name
    shutil.copytree(default_project, copy, symlinks=True)
    return copy


# The only skips a baked project's test run may report: tests that need a CUDA GPU, where none is present
# (no GPU is not a missing tool). Any other skip is a proof that did not run, and fails the check.
GPU_SKIP_REASONS = ("needs a CUDA GPU", "checks the message shown where no GPU exists")


def assert_tests_passed(output: str, allowed_skips: tuple[str, ...] = GPU_SKIP_REASONS) -> None:
    """pytest's output (with -rs or -ra) shows passed tests, no failure or error, and only the allowed skips."""
    summary = next((line for line in reversed(output.splitlines()) if re.search(r"\d+ \w+.* in [\d.]+s", line)), "")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    assert counts.get("passed", 0) > 0, f"no test passed: {summary!r}\n{output[-3000:]}"
    harmless = ("passed", "skipped", "deselected", "warning", "warnings")
    bad = {word: n for word, n in counts.items() if word not in harmless}
    assert not bad, f"{summary}\n{output[-6000:]}"
    reasons = re.findall(r"^SKIPPED \[(\d+)\] [^:]+(?::\d+)?: (.*)$", output, flags=re.MULTILINE)
    listed = sum(int(n) for n, _ in reasons)
    assert listed == counts.get("skipped", 0), f"skips not listed (run pytest with -rs): {summary}"
    unexpected = [reason for _, reason in reasons if reason not in allowed_skips]
    assert not unexpected, f"unexpected skips {unexpected}: {summary}\n{output[-4000:]}"
