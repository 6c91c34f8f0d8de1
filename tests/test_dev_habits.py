"""A generated project's everyday tooling works: `make setup`, the git hooks, every Makefile target.

The hooks must pass on a fresh project and catch what they are there to catch: notebook output,
lint errors, a params.yaml that drifted from conf/, broken YAML, a bad workflow, conflict markers,
large files. Every Makefile target runs for real (server targets in the slow tier, or fast variants).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import assert_tests_passed, bake, layered_env, run

PROJECT_PYTHON: dict[Path, Path] = {}
TARGETS = ("setup", "test", "test-spark", "lint", "params", "repro", "data", "serve", "rollout", "rollback",
           "deploy-status", "ci-local", "monitor")


# mypy's cache of the third-party packages (torch, lightning, ...) outlives one bake: a cold run costs a
# minute, a warm one seconds. Entries are checked against the files, so a stale cache is only slower.
MYPY_CACHE = Path(tempfile.gettempdir()) / "cookiecutter-gitops-ml-mypy-cache"


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """This interpreter's tools on PATH (even when its venv is not activated), and the shared mypy cache."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "MYPY_CACHE_DIR": str(MYPY_CACHE)}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Path]:
    """A fresh bake after `make setup`: first data version committed, hooks installed.

    `make setup` installs the project into a venv of its own (layered over this environment, so
    nothing is downloaded), as a user installs it into theirs; this environment is not touched.
    """
    baked = bake(tmp_path_factory.mktemp("habits"))
    PROJECT_PYTHON[baked] = layered_env(baked)
    run(["make", "setup", f"PYTHON={PROJECT_PYTHON[baked]}"], cwd=baked, env=env, timeout=900)
    yield baked


@pytest.fixture
def copy(project: Path, tmp_path: Path) -> Path:
    """A private copy of the set-up project (git, hooks, DVC cache and data included) for a test to change."""
    target = tmp_path / project.name
    shutil.copytree(project, target, symlinks=True)
    return target


def project_python() -> Path:
    """The module project's own interpreter (its venv); copies of the project use it too."""
    (python,) = PROJECT_PYTHON.values()
    return python


def make(target: str, cwd: Path, env: dict[str, str], *variables: str, timeout: float = 900,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["make", target, f"PYTHON={project_python()}", *variables], cwd=cwd, env=env, timeout=timeout,
               check=check)


def git(cwd: Path, *args: str) -> str:
    return run(["git", *args], cwd=cwd).stdout.strip()


# --- make setup, help and the README --------------------------------------------------------------


def test_make_setup_leaves_a_ready_project(project: Path) -> None:
    for hook in ("pre-commit", "pre-push", "post-checkout"):
        assert "pre-commit" in (project / ".git" / "hooks" / hook).read_text(), f"{hook} hook not installed"
    assert (project / "data" / "raw" / "transactions.parquet.dvc").is_file()
    assert (project / "data" / "raw" / "transactions.parquet").is_file()
    assert git(project, "status", "--porcelain") == ""
    assert git(project, "log", "-1", "--format=%s").startswith("data: raw v(")


@pytest.mark.slow
def test_make_setup_again_is_harmless(project: Path, copy: Path, env: dict[str, str]) -> None:
    """A second `make setup` (or a teammate's first, on a clone) fetches the data instead of making more."""
    head = git(copy, "rev-parse", "HEAD")
    (copy / "data" / "raw" / "transactions.parquet").unlink()
    make("setup", copy, env, timeout=900)
    assert (copy / "data" / "raw" / "transactions.parquet").is_file()
    assert git(copy, "rev-parse", "HEAD") == head
    assert git(copy, "status", "--porcelain") == ""


def test_make_help_and_readme_cover_every_target(project: Path, env: dict[str, str]) -> None:
    listed = make("help", project, env).stdout
    makefile = (project / "Makefile").read_text(encoding="utf-8")
    readme = (project / "README.md").read_text(encoding="utf-8")
    declared = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.MULTILINE))
    assert declared == {"help", *TARGETS}, "a target was added or removed: update TARGETS and the README"
    for target in TARGETS:
        assert re.search(rf"make {re.escape(target)}\s", listed), f"`make help` does not list {target}"
        assert f"`make {target}" in readme, f"the README does not document `make {target}`"
    for local in ("/work/", "/root/", "/home/", "pytest-of-"):
        assert local not in readme, f"the README names a path of the machine it was written on ({local})"


# --- pre-commit ---------------------------------------------------------------------------------


def test_make_lint_passes_on_a_fresh_project(copy: Path, env: dict[str, str]) -> None:
    result = make("lint", copy, env, timeout=900, check=False)
    assert result.returncode == 0, f"pre-commit fails on a fresh project:\n{result.stdout[-8000:]}{result.stderr}"
    assert git(copy, "status", "--porcelain") == "", "a hook rewrote files of a fresh project"


def plant_notebook_output(project: Path) -> str:
    path = project / "notebooks" / "explore.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cell = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    cell["execution_count"] = 1
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["a customer's card number\n"]}]
    path.write_text(json.dumps(notebook, indent=1) + "\n", encoding="utf-8")
    return "notebooks/explore.ipynb"


def plant_ruff_error(project: Path) -> str:
    with (project / "tools" / "repo_checks.py").open("a", encoding="utf-8") as script:
        script.write("\n\ndef planted():\n    unused = 1\n")
    return "tools/repo_checks.py"


def plant_params_drift(project: Path) -> str:
    params = project / "params.yaml"
    text = params.read_text(encoding="utf-8")
    assert "\nseed: 42\n" in text
    params.write_text(text.replace("\nseed: 42\n", "\nseed: 7\n"), encoding="utf-8")
    return "params.yaml"


def plant_broken_yaml(project: Path) -> str:
    with (project / "conf" / "model" / "mlp.yaml").open("a", encoding="utf-8") as conf:
        conf.write("hidden_sizes: [64, 32\n")
    return "conf/model/mlp.yaml"


def plant_invalid_workflow(project: Path) -> str:
    (project / ".github" / "workflows" / "planted.yml").write_text(
        "name: planted\non: push\njobs:\n  build:\n    steps:\n      - run: echo\n", encoding="utf-8")  # no runs-on
    return ".github/workflows/planted.yml"


def plant_conflict_markers(project: Path) -> str:
    with (project / "pipelines" / "train.py").open("a", encoding="utf-8") as script:
        script.write("<<<<<<< HEAD\nx = 1\n=======\nx = 2\n>>>>>>> feature\n")
    return "pipelines/train.py"


def plant_large_file(project: Path) -> str:
    (project / "data" / "extra.csv").write_text("amount\n" + "12.5\n" * 150_000, encoding="utf-8")
    return "data/extra.csv"


PLANTED = {
    "nbstripout": plant_notebook_output,
    "ruff": plant_ruff_error,
    "params-drift": plant_params_drift,
    "check-syntax": plant_broken_yaml,
    "check-github-workflows": plant_invalid_workflow,
    "check-merge-conflict": plant_conflict_markers,
    "check-large-files": plant_large_file,
}


@pytest.mark.parametrize("hook", list(PLANTED))
def test_hook_catches_a_planted_problem(hook: str, copy: Path, env: dict[str, str]) -> None:
    path = PLANTED[hook](copy)
    run(["git", "stash", "-q", "--include-untracked"], cwd=copy)
    if (copy / path).exists():
        clean = run(["pre-commit", "run", hook, "--files", path], cwd=copy, env=env, check=False)
        assert clean.returncode == 0, f"{hook} fails on {path} before anything was planted:\n{clean.stdout}"
    run(["git", "stash", "pop", "-q"], cwd=copy)
    caught = run(["pre-commit", "run", hook, "--files", path], cwd=copy, env=env, check=False)
    assert caught.returncode != 0, f"{hook} let a planted problem in {path} through:\n{caught.stdout}"
    assert "Failed" in caught.stdout


def test_nbstripout_restores_the_committed_notebook(copy: Path, env: dict[str, str]) -> None:
    """The committed notebook is exactly what nbstripout produces: stripping a run gives it back."""
    path = copy / "notebooks" / "explore.ipynb"
    committed = path.read_bytes()
    plant_notebook_output(copy)
    run(["pre-commit", "run", "nbstripout", "--files", "notebooks/explore.ipynb"], cwd=copy, env=env, check=False)
    assert path.read_bytes() == committed


def test_git_commit_is_blocked_by_the_hooks(copy: Path, env: dict[str, str]) -> None:
    planted = [plant_ruff_error(copy), plant_params_drift(copy)]
    run(["git", "add", *planted], cwd=copy)
    commit = run(["git", "commit", "-m", "planted"], cwd=copy, env=env, check=False)
    assert commit.returncode != 0, "git commit went through with a lint error and a drifted params.yaml"
    output = commit.stdout + commit.stderr
    assert "ruff" in output and "params.yaml matches conf/" in output
    assert git(copy, "log", "-1", "--format=%s") != "planted"


# --- the other targets, for real ------------------------------------------------------------------


def test_make_params_recomposes_without_drift(copy: Path, env: dict[str, str]) -> None:
    make("params", copy, env)
    assert git(copy, "status", "--porcelain") == ""


def test_make_test_runs_the_notebook(project: Path, env: dict[str, str]) -> None:
    assert (project / "tests" / "project" / "test_notebooks.py").exists(), "the default bake holds the notebook test"
    result = make("test", project, env, "PYTEST_ARGS=-q -p no:cacheprovider tests/project/test_notebooks.py",
                  timeout=600)
    assert re.search(r"\d+ passed", result.stdout) and "skipped" not in result.stdout


@pytest.mark.proof
def test_make_test_spark_holds_spark_to_the_validate_stage(copy: Path, env: dict[str, str]) -> None:
    """The README's Spark path: `make test-spark` installs the spark extra (pyspark 4) where pyspark is missing,
    then runs the project's spark tests on a local session (Java from .ci/run), none skipped."""
    # `make test` (any selection that does not name spark) leaves them out; pytest's "nothing ran" fails make.
    default = make("test", copy, env, "PYTEST_ARGS=-q -p no:cacheprovider tests/data/test_spark.py", check=False)
    assert default.returncode != 0 and re.search(r"^\d+ deselected in", default.stdout, re.MULTILINE), default.stdout
    result = make("test-spark", copy, env, timeout=1800)
    assert_tests_passed(result.stdout, allowed_skips=())
    assert re.search(r"\d+ passed, \d+ deselected", result.stdout), result.stdout[-2000:]  # the spark tests only


def test_make_repro_runs_a_stage(copy: Path, env: dict[str, str]) -> None:
    make("repro", copy, env, "REPRO_ARGS=validate", timeout=600)
    report = json.loads((copy / "reports" / "validation.json").read_text(encoding="utf-8"))
    assert report["passed"] and report["rows_total"] == report["rows_valid"] + report["rows_quarantined"]


def test_make_data_commits_a_new_version(copy: Path, env: dict[str, str]) -> None:
    pointer = copy / "data" / "raw" / "transactions.parquet.dvc"
    before = pointer.read_text(encoding="utf-8")
    make("data", copy, env, "SEED=3", "DRIFT=0.3", "ROWS=5000", timeout=600)
    assert pointer.read_text(encoding="utf-8") != before
    assert git(copy, "log", "-1", "--format=%s") == "data: raw v(seed=3, rows=5000, drift=0.3)"
    assert git(copy, "status", "--porcelain") == ""


def test_make_deploy_status_reports_the_state(copy: Path, env: dict[str, str]) -> None:
    result = make("deploy-status", copy, env, timeout=120)
    assert "live" in result.stdout


def test_make_rollback_refuses_with_nothing_deployed(copy: Path, env: dict[str, str]) -> None:
    result = make("rollback", copy, env, timeout=120, check=False)
    assert result.returncode != 0 and "nothing is live" in result.stderr
    assert git(copy, "status", "--porcelain") == ""


def test_make_ci_local_lists_the_workflows(project: Path, env: dict[str, str]) -> None:
    result = make("ci-local", project, env, "ACT_ARGS=-l", timeout=300)
    assert re.search(r"\btest\b", result.stdout), result.stdout


# --- slow: the release loop and a real CI run -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, seconds: float, process: subprocess.Popen[str]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


@pytest.mark.slow
def test_make_repro_serve_rollout(copy: Path, env: dict[str, str]) -> None:
    make("repro", copy, env, timeout=900)
    package = json.loads((copy / "reports" / "package.json").read_text(encoding="utf-8"))
    assert package["gate_passed"] and package["bento_tag"]

    port = free_port()
    server = subprocess.Popen(["make", "serve", f"PYTHON={project_python()}", f"PORT={port}"], cwd=copy,
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        assert wait_ready(f"http://127.0.0.1:{port}/readyz", 120, server), "make serve never became ready"
        smoke = json.loads((copy / "bentos" / "smoke_requests.json").read_text(encoding="utf-8"))["requests"][0]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", json.dumps(smoke["body"]).encode(),
                                         {"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        deadline = time.monotonic() + 15  # the log is written off the request path
        while not list((copy / "logs").rglob("data.*.log")) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    # The request left the prediction log in the project; the project's own checks still pass there.
    assert list((copy / "logs").rglob("data.*.log")), "the served request was not logged under logs/"
    make("test", copy, env, "PYTEST_ARGS=-q -p no:cacheprovider tests/project/test_layout.py", timeout=600)

    # Loopback ports of our own, so a rollout here never meets another one on this machine.
    state = copy / "bentos" / "deployment.yaml"
    text = state.read_text(encoding="utf-8")
    for old in ("port: 3001", "port: 3002", "port: 8080"):
        text = text.replace(old, f"port: {free_port()}", 1)
    state.write_text(text, encoding="utf-8")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "--no-verify", "-m", "pipeline run; deployment on free ports")
    try:
        make("rollout", copy, env, timeout=600)
        assert git(copy, "log", "-1", "--format=%s").startswith("deploy: ")
        status = make("deploy-status", copy, env, timeout=120).stdout
        assert package["bento_tag"] in status
    finally:
        run([sys.executable, "tools/deploy.py", "stop"], cwd=copy, env=env, check=False, timeout=120)


@pytest.mark.slow
def test_make_ci_local_runs_the_ci_workflow(copy: Path, env: dict[str, str]) -> None:
    result = make("ci-local", copy, env, timeout=1800, check=False)
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert "Job succeeded" in result.stdout
