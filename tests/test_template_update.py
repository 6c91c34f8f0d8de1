"""A generated project can follow its template: `cruft update` merges template changes, keeps the user's.

The template is committed (as it is on disk now) into a scratch git repository, baked from there,
changed by a "user" and by a "template maintainer", then updated with cruft, all offline.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import TEMPLATE, run
from cookiecutter.main import cookiecutter

SLUG = "{{cookiecutter.project_slug}}"
# A fast subset of the generated project's own tests: config, dataset and validation code, no training.
FAST_PROJECT_TESTS = ["tests/test_config.py", "tests/data/test_dataset.py", "tests/data/test_validation.py",
                      "tests/project/test_notebooks.py::test_notebook_has_no_outputs"]
# The tools of this interpreter's environment (cruft, ruff, dvc, pre-commit) even when it is not activated.
TOOLS_ENV = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
# The last template commit before src/<package>/ was split into subpackages: projects baked from it
# have the flat layout and must still follow the template.
OLD_LAYOUT = "036c5ca"


def git(*args: str, cwd: Path) -> str:
    return run(["git", *args], cwd=cwd, env=TOOLS_ENV).stdout.strip()


def copy_template(destination: Path) -> None:
    """Copy the template as it is on disk (committed or not, ignored files left out) into `destination`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=TEMPLATE,
                            capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = TEMPLATE / name
        if source.is_file() and not source.is_symlink():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def commit_all(repository: Path, message: str) -> str:
    """Commit everything in `repository`; return the new commit."""
    git("add", "-A", cwd=repository)
    git("commit", "-q", "-m", message, cwd=repository)
    return git("rev-parse", "HEAD", cwd=repository)


def snapshot_template(destination: Path) -> Path:
    """The template as it is on disk, as a fresh git repository."""
    destination.mkdir(parents=True)
    copy_template(destination)
    git("init", "-q", "-b", "main", cwd=destination)
    commit_all(destination, "template v1")
    return destination


def commit_template_change(template: Path) -> str:
    """A maintainer's release: a new rendered file, an edit to a file users rarely touch, an edit to README."""
    project = template / SLUG
    (project / "docs").mkdir(exist_ok=True)
    (project / "docs" / "UPGRADING.md").write_text("# Upgrading {{ cookiecutter.project_name }}\n", encoding="utf-8")
    with (project / "LICENSE").open("a", encoding="utf-8") as license_file:
        license_file.write("\nTemplate maintainers' note.\n")
    readme = (project / "README.md").read_text(encoding="utf-8")
    title, rest = readme.split("\n", 1)
    (project / "README.md").write_text(f"{title}\n\n> Template v2 line.\n{rest}", encoding="utf-8")
    return commit_all(template, "template v2")


@pytest.fixture(scope="module")
def updated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Bake from template v1, change the project, release template v2, `cruft update` the project."""
    root = tmp_path_factory.mktemp("update")
    template = snapshot_template(root / "template")
    v1 = git("rev-parse", "HEAD", cwd=template)
    project = Path(cookiecutter(str(template), no_input=True, output_dir=str(root / "out")))
    state_v1 = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    check_v1 = run(["cruft", "check"], cwd=project, env=TOOLS_ENV, check=False)

    # The user's own work, committed: a README section and a config comment.
    with (project / "README.md").open("a", encoding="utf-8") as readme:
        readme.write("\n## Our team's notes\n\nUser line that must survive.\n")
    config = project / "conf" / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("seed: 42", "seed: 42  # our lucky number"),
                      encoding="utf-8")
    git("commit", "-q", "-am", "our changes", cwd=project)

    v2 = commit_template_change(template)
    check_v2 = run(["cruft", "check"], cwd=project, env=TOOLS_ENV, check=False)
    project_id = (project / ".project-id").read_text(encoding="utf-8")
    update = run(["cruft", "update", "-y"], cwd=project, env=TOOLS_ENV, timeout=300)
    return {"project": project, "v1": v1, "v2": v2, "state_v1": state_v1, "check_v1": check_v1,
            "check_v2": check_v2, "update": update, "project_id": project_id}


def test_bake_records_the_template(updated: dict) -> None:
    state = updated["state_v1"]
    assert state["commit"] == updated["v1"]
    assert Path(state["template"]).name == "template" and Path(state["template"]).is_absolute()
    assert state["context"]["cookiecutter"]["project_slug"] == "fraud-detection"
    assert {".git", ".dvc"} <= set(state["skip"]), "cruft must never diff the hook's git and DVC folders"
    assert "_output_dir" not in state["context"]["cookiecutter"]
    assert updated["check_v1"].returncode == 0, updated["check_v1"].stdout


def test_cruft_check_sees_a_new_template_release(updated: dict) -> None:
    assert updated["check_v2"].returncode != 0


def test_update_merges_template_changes_and_keeps_the_users(updated: dict) -> None:
    project: Path = updated["project"]
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert "User line that must survive." in readme
    assert "> Template v2 line." in readme
    assert "# our lucky number" in (project / "conf" / "config.yaml").read_text(encoding="utf-8")
    assert (project / "docs" / "UPGRADING.md").read_text(encoding="utf-8") == "# Upgrading Fraud Detection\n"
    assert "Template maintainers' note." in (project / "LICENSE").read_text(encoding="utf-8")
    state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert state["commit"] == updated["v2"]
    assert not list(project.rglob("*.rej")), "the update left rejected hunks"
    status = git("status", "--porcelain", cwd=project)
    assert ".git/" not in status and ".dvc/" not in status, status
    # Each render of the template draws a new id: the update must keep the project's own (its identity).
    assert (project / ".project-id").read_text(encoding="utf-8") == updated["project_id"]
    assert ".project-id" not in status, status


def test_updated_project_still_passes_its_checks(updated: dict) -> None:
    project: Path = updated["project"]
    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "Update from the template", cwd=project)
    # The updated project's own code, not whichever copy of the package is installed.
    env = {**TOOLS_ENV, "PYTHONPATH": str(project / "src")}
    run(["ruff", "check", "."], cwd=project, env=env)
    run([sys.executable, "tools/params.py", "--check"], cwd=project, env=env)
    run(["dvc", "status"], cwd=project, env=env)
    run([sys.executable, "-m", "pytest", "-q", "-x", "-m", "not slow", "-p", "no:cacheprovider",
         *FAST_PROJECT_TESTS], cwd=project, env=env, timeout=600)
    assert git("status", "--porcelain", cwd=project) == ""


def tracked_files(project: Path) -> dict[str, bytes]:
    """The project's files under git and their contents."""
    return {name: (project / name).read_bytes() for name in git("ls-files", "-z", cwd=project).split("\0") if name}


def test_project_baked_before_the_layout_change_updates_to_the_current_template(tmp_path: Path) -> None:
    """A flat-layout project, updated with `cruft update`, holds exactly what a fresh bake of the template holds."""
    known = subprocess.run(["git", "cat-file", "-e", f"{OLD_LAYOUT}^{{commit}}"], cwd=TEMPLATE, capture_output=True)
    if known.returncode != 0:
        pytest.fail(f"the template's git history lacks {OLD_LAYOUT}, the last commit of the flat layout "
                    "(a shallow clone?): `git fetch --unshallow` and rerun")
    template = tmp_path / "template"
    template.mkdir()
    git("init", "-q", "-b", "main", cwd=template)
    archive = subprocess.run(["git", "archive", OLD_LAYOUT], cwd=TEMPLATE, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(template, filter="data")
    old = commit_all(template, "template before the layout change")
    git("rm", "-rq", ".", cwd=template)
    copy_template(template)
    new = commit_all(template, "template now")

    git("checkout", "-q", old, cwd=template)  # the bake records its template checkout's HEAD in .cruft.json
    project = Path(cookiecutter(str(template), no_input=True, output_dir=str(tmp_path / "old")))
    git("checkout", "-q", "main", cwd=template)
    assert json.loads((project / ".cruft.json").read_text(encoding="utf-8"))["commit"] == old
    run(["cruft", "update", "-y", "--checkout", new], cwd=project, env=TOOLS_ENV, timeout=300)
    rejected = sorted(str(path.relative_to(project)) for path in project.rglob("*.rej"))
    assert not rejected, f"cruft left rejected hunks: {rejected}"
    commit_all(project, "Update from the template")
    assert git("status", "--porcelain", cwd=project) == ""

    fresh = Path(cookiecutter(str(template), no_input=True, output_dir=str(tmp_path / "fresh")))
    updated, baked = tracked_files(project), tracked_files(fresh)
    assert sorted(updated.keys() - baked.keys()) == [], "files the update left behind"
    assert sorted(baked.keys() - updated.keys()) == [], "files the update did not bring"
    differing = sorted(name for name in baked if updated[name] != baked[name])
    # The allowed differences: .cruft.json's "checkout" keeps the --checkout the update was given, where a bake
    # records none (cruft also writes the file in its own JSON layout, so compare it parsed); and each project
    # has an id of its own (the update brought one to this project, baked before ids existed).
    assert set(differing) <= {".cruft.json", ".project-id"}, differing
    assert re.fullmatch(rb"[0-9a-f]{32}\n", updated[".project-id"]) and updated[".project-id"] != baked[".project-id"]
    updated_state, baked_state = (json.loads(files[".cruft.json"]) for files in (updated, baked))
    assert (updated_state.pop("checkout"), baked_state.pop("checkout")) == (new, None)
    assert updated_state == baked_state
