"""Inside the default bake: its own lint and tests pass, and its pipeline runs end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import assert_tests_passed, run


def test_ruff_is_clean(default_project: Path) -> None:
    run([sys.executable, "-m", "ruff", "check", "."], cwd=default_project)
    run([sys.executable, "-m", "ruff", "format", "--check", "."], cwd=default_project)


def test_its_own_test_suite_passes(default_project: Path) -> None:
    result = run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "not slow"],
                 cwd=default_project, timeout=1800)
    assert_tests_passed(result.stdout)


def test_dvc_repro_runs_the_shipped_pipeline_then_is_a_no_op(project_copy: Path) -> None:
    first = run(["dvc", "repro"], cwd=project_copy, timeout=1800)
    for stage in ("validate", "train", "evaluate", "gate", "package"):
        assert f"Running stage '{stage}'" in first.stdout, first.stdout
    package = json.loads((project_copy / "reports" / "package.json").read_text())
    assert package["gate_passed"] is True and package["bento_tag"]
    second = run(["dvc", "repro"], cwd=project_copy)
    assert "Running stage" not in second.stdout
    # Metrics are flat numeric summaries: each file's `dvc metrics show` table reads in a terminal.
    declared = json.loads(run(["dvc", "metrics", "show", "--json"], cwd=project_copy).stdout)
    files = [name for rev in declared.values() for name in rev["data"]]
    assert len(files) >= 4, declared
    for name in files:
        table = run(["dvc", "metrics", "show", name], cwd=project_copy).stdout
        widest = max(len(line) for line in table.splitlines())
        assert widest <= 120, f"`dvc metrics show {name}` is {widest} columns wide:\n{table}"



# The proof tier runs the same slow tier through act, as ci's `slow tests` job (tests/test_workflows_act.py).
@pytest.mark.slow
@pytest.mark.parametrize("order", [[], ["--reverse-order"]], ids=["forward", "reversed"])
def test_its_whole_suite_passes_in_one_process_in_either_order(default_project: Path, order: list[str]) -> None:
    """`python -m pytest`, as its README says: every tier in one process (Spark apart: opt-in), files first to
    last and last to first, so no test leans on what another left in the process (MLflow's store, the environment).

    The slow tier holds the only proof of its servers: real bentos over HTTP, blue-green behind nginx,
    whole-pipeline runs with a real champion, kill -9 and resume, DDP on CPU. Only GPU tests may skip."""
    result = run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *order],
                 cwd=default_project, timeout=7200)
    assert_tests_passed(result.stdout)
