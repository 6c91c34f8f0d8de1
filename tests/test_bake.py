"""Bake every option; check the files, the rendering and the first commit."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import CONTEXT, bake, run

CHOICE_OPTIONS = {key: value for key, value in CONTEXT.items() if isinstance(value, list) and not key.startswith("_")}
FREE_OPTIONS = {
    "mlflow_tracking_uri": ["sqlite:///mlflow.db", "http://mlflow.internal:5000"],
    "dvc_remote_url": ["../remote", "s3://bucket/dvc"],
    "ci_gpu_runner_label": ["", "gpu-a100"],
    "deploy_runner_label": ["serving", "model-host-1"],
}
ALL_OPTIONS = {**CHOICE_OPTIONS, **FREE_OPTIONS}


def covering_matrix() -> list[dict[str, str]]:
    """Every value of every option at least once, in as many bakes as the longest option has values."""
    width = max(len(values) for values in ALL_OPTIONS.values())
    return [{key: values[i % len(values)] for key, values in ALL_OPTIONS.items()} for i in range(width)]


def full_matrix() -> list[dict[str, str]]:
    """Every combination of the choice options (slow tier)."""
    keys = list(CHOICE_OPTIONS)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*CHOICE_OPTIONS.values())]


EXPECTED_TOP_LEVEL = {
    ".github", "data", "conf", "src", "pipelines", "bentos", "notebooks", "tests", "dvc.yaml", "params.yaml",
    "pyproject.toml", "README.md",
}
UNRENDERED = re.compile(r"(?<!\$)\{\{|\{%")


def generated_files(project: Path) -> set[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=project, capture_output=True, text=True, check=True)
    return set(listed.stdout.split())


def expected_default_files() -> set[str]:
    manifest = Path(__file__).with_name("expected_files.txt").read_text(encoding="utf-8")
    return {line.strip() for line in manifest.splitlines() if line.strip() and not line.startswith("#")}


def assert_rendered(project: Path) -> None:
    for path in project.rglob("*"):
        # .j2 files are the project's own Jinja templates (the model card), copied without rendering.
        dvc_internal = ".dvc" in path.parts and path.name != "config"
        if path.is_dir() or path.suffix == ".j2" or ".git" in path.parts or dvc_internal:
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        for number, line in enumerate(text.splitlines(), 1):
            # GitHub's own ${{ }} expressions are expected in workflow files.
            assert not UNRENDERED.search(line.replace("${{", "")), f"unrendered Jinja in {path}:{number}: {line}"


def test_default_bake_has_the_contract_layout(tmp_path: Path) -> None:
    project = bake(tmp_path)
    assert project.name == "fraud-detection"
    assert {p.name for p in project.iterdir()} >= EXPECTED_TOP_LEVEL
    assert (tmp_path / "cookiecutter-gitops-ml").exists() is False
    assert generated_files(project) == expected_default_files()
    assert_rendered(project)


def test_project_starts_under_git_and_dvc(tmp_path: Path) -> None:
    project = bake(tmp_path)
    log = subprocess.run(["git", "log", "--oneline"], cwd=project, capture_output=True, text=True, check=True)
    assert len(log.stdout.splitlines()) == 1
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True)
    assert status.stdout == "", f"the first commit left files out:\n{status.stdout}"
    config = (project / ".dvc" / "config").read_text()
    assert "hydra" in config and 'remote "storage"' in config


def tracked_contents(project: Path) -> dict[str, bytes]:
    return {name: (project / name).read_bytes() for name in generated_files(project)}


def test_two_bakes_of_one_second_are_two_projects_on_one_tracking_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same answers, same author, same second: the same files and first-commit metadata. A project's identity
    on a shared tracking server must still tell them apart: the second is refused the first's names, in one line."""
    same_second = "2026-12-07T12:00:00+00:00"
    monkeypatch.setenv("GIT_AUTHOR_DATE", same_second)
    monkeypatch.setenv("GIT_COMMITTER_DATE", same_second)
    first, second = bake(tmp_path / "first"), bake(tmp_path / "second")
    commit = ["git", "log", "-1", "--format=%an %ae %ad %cn %ce %cd %s"]
    assert run(commit, cwd=first).stdout == run(commit, cwd=second).stdout
    ours, theirs = tracked_contents(first), tracked_contents(second)
    assert ours.keys() == theirs.keys()
    assert {name for name in ours if ours[name] != theirs[name]} <= {".project-id"}, "bakes differ in their id only"

    shared = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'shared.db'}"}
    show = [sys.executable, "tools/promote.py", "--show"]  # reads the registry: claims the experiment and model
    aliases = json.loads(run(show, cwd=first, env=shared).stdout.splitlines()[-1])
    assert aliases == {"challenger": None, "champion": None}, "the first bake takes the names"
    refused = run(show, cwd=second, env=shared, check=False)
    errors = [line for line in refused.stderr.splitlines() if "ERROR" in line]
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert len(errors) == 1 and "belongs to another project" in errors[0], refused.stderr[-3000:]


def test_setup_gives_a_project_baked_before_ids_one_of_its_own_and_keeps_it(tmp_path: Path) -> None:
    project = bake(tmp_path)
    run(["git", "rm", "-q", ".project-id"], cwd=project)
    run(["git", "commit", "-q", "-m", "as baked before project ids"], cwd=project)
    setup = [sys.executable, "tools/init_project.py"]  # what `make setup` runs
    assert "committed .project-id" in run(setup, cwd=project).stdout
    project_id = (project / ".project-id").read_text(encoding="utf-8")
    assert re.fullmatch(r"[0-9a-f]{32}\n", project_id), project_id
    assert run(["git", "status", "--porcelain"], cwd=project).stdout == ""
    assert run(setup, cwd=project).stdout.strip() == "repository ready: nothing to do"
    assert (project / ".project-id").read_text(encoding="utf-8") == project_id, "an id is never replaced"


@pytest.mark.parametrize(("remote", "extras"), [("../remote", "dev"), ("s3://bucket/dvc", "dev,s3")])
def test_setup_installs_dvc_s3_for_an_s3_remote(tmp_path: Path, remote: str, extras: str) -> None:
    """`make setup` (and the README's plain command, the same script) installs the s3 extra, dvc-s3,
    exactly when the default DVC remote is s3://, also one pointed there after the bake."""
    project = bake(tmp_path, dvc_remote_url=remote)
    s3_extra = tomllib.loads((project / "pyproject.toml").read_text())["project"]["optional-dependencies"]["s3"]
    assert any(requirement.startswith("dvc-s3") for requirement in s3_extra)
    readme = (project / "README.md").read_text()
    assert 'pip install -c constraints.txt -e ".[$(python tools/init_project.py --extras)]"' in readme

    def setup_installs() -> str:
        dry_run = run(["make", "-n", "setup", f"PYTHON={sys.executable}"], cwd=project).stdout
        return re.findall(r"pip install -c constraints.txt -e '\.\[(.*)\]'", dry_run)[0]

    assert setup_installs() == extras
    run(["dvc", "remote", "modify", "storage", "url", "s3://other-bucket/dvc"], cwd=project)
    assert setup_installs() == "dev,s3"


@pytest.mark.parametrize("answers", covering_matrix(), ids=lambda a: "-".join(str(v) or "none" for v in a.values()))
def test_bake_matrix_renders_every_option(tmp_path: Path, answers: dict[str, str]) -> None:
    project = bake(tmp_path, **answers)
    assert_rendered(project)
    config = (project / "conf" / "config.yaml").read_text()
    assert f"trainer: {answers['accelerator']}" in config
    params = (project / "params.yaml").read_text()
    assert f"accelerator: {'cpu' if answers['accelerator'] == 'cpu' else 'gpu'}" in params
    assert answers["mlflow_tracking_uri"] in (project / "conf" / "logger" / "mlflow.yaml").read_text()
    assert f"requires-python = \">={answers['python_version']}\"" in (project / "pyproject.toml").read_text()
    notebooks = list((project / "notebooks").glob("*.ipynb"))
    assert bool(notebooks) == (answers["include_notebooks"] == "yes")
    assert (project / "tests" / "project" / "test_notebooks.py").exists() == (answers["include_notebooks"] == "yes")
    retrain = (project / ".github" / "workflows" / "retrain.yml").read_text()
    if answers["ci_gpu_runner_label"]:
        assert f"runs-on: [self-hosted, {answers['ci_gpu_runner_label']}]" in retrain
    else:
        assert "runs-on: ubuntu-latest  # training runner" in retrain
    assert answers["license"] in (project / "LICENSE").read_text()
    target = yaml.safe_load((project / "bentos" / "deployment.yaml").read_text())["target"]
    assert target == {"kind": answers["deploy_target"], "runner_label": answers["deploy_runner_label"]}
    # params.yaml ships composed from this bake's conf/ (the accelerator changes the trainer group).
    run([sys.executable, "tools/params.py", "--check"], cwd=project)


@pytest.mark.slow
@pytest.mark.parametrize("answers", full_matrix(), ids=lambda a: "-".join(a.values()))
def test_full_choice_matrix(tmp_path: Path, answers: dict[str, str]) -> None:
    project = bake(tmp_path, **answers)
    assert_rendered(project)
