"""Projects sharing a machine: one BentoML store, and what a package run may delete in it.

The journal tests are fast; the tests that run two pipelines (or a copied project's) are the slow tier's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT, make_workspace, run, workspace_env
from omegaconf import DictConfig, OmegaConf

from {{ cookiecutter.package_name }}.errors import ProjectIdentityError, TrackingError
from {{ cookiecutter.package_name }}.lineage import project_id
from {{ cookiecutter.package_name }}.release.journal import (
    Journal,
    JournalError,
    clear_journal,
    read_journal,
    write_journal,
)
from {{ cookiecutter.package_name }}.serving.api import MODEL_NAME
from {{ cookiecutter.package_name }}.training.tracking import PROJECT_TAG, configure
from tools.init_project import ensure_project_id

FAST = [sys.executable, "tools/params.py", "debug=fast"]
JOURNAL = Path("bentos/.state/package-journal.json")


def test_a_journal_is_written_whole_read_back_and_cleared(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.json"
    assert read_journal(path) is None
    journal = Journal.new()
    write_journal(journal, path)
    assert read_journal(path) == journal
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file is left beside it"
    clear_journal(path)
    assert read_journal(path) is None


def test_journal_ids_are_fresh_bentoml_versions_shared_by_the_model_and_the_bento() -> None:
    from bentoml._internal.tag import Tag

    journals = [Journal.new() for _ in range(200)]
    assert len({j.id for j in journals}) == 200
    for journal in journals[:5]:
        assert {Tag.from_str(tag).version for tag in journal.tags} == {journal.id}


def test_a_journal_that_names_other_tags_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.json"
    journal = Journal.new()
    path.write_text(json.dumps({"id": journal.id, "model_tag": journal.model_tag, "bento_tag": "other:abc"}))
    with pytest.raises(JournalError, match="not the tags of run"):
        read_journal(path)
    path.write_text('{"id": ')  # a hand-edited or foreign file
    with pytest.raises(JournalError, match="not a package journal"):
        read_journal(path)


RECOVERY = """
import json, sys, bentoml
from pathlib import Path
from omegaconf import OmegaConf
from {{ cookiecutter.package_name }}.release.journal import Journal, write_journal
from {{ cookiecutter.package_name }}.release.package import recover

ours, theirs = Journal.new(), Journal.new()
labels = {"registry_version": "1", "model_md5": "0" * 32}  # what two projects' items have in common
for journal in (ours, theirs):
    with bentoml.models.create(journal.model_tag, labels=labels) as model:
        Path(model.path_of("x")).write_text("x")
torn = Path(bentoml.models.get(theirs.model_tag).path).with_name("tornbyanotherproject")
__import__("shutil").copytree(bentoml.models.get(theirs.model_tag).path, torn)
(torn / "model.yaml").unlink()  # another project's save, torn by a kill: not ours to judge
write_journal(ours)
cfg = OmegaConf.create({"logger": {"tracking_uri": sys.argv[1], "experiment_name": "p", "registered_model_name": "p"}})
recover(cfg, Path("reports"))
left = sorted(p.name for p in torn.parent.iterdir() if p.is_dir())
print(json.dumps({"ours": ours.id, "theirs": theirs.id, "left": left, "journal": Path(sys.argv[2]).exists()}))
"""


def test_recovery_removes_what_its_journal_names_and_nothing_another_project_left(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(PROJECT / "src"), "BENTOML_HOME": str(tmp_path / "bentoml")}
    ensure_project_id(tmp_path)  # recovery looks the journal's version up in the project's registry
    result = subprocess.run(
        [sys.executable, "-c", RECOVERY, f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / JOURNAL)],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert f"removed {MODEL_NAME}:{outcome['ours']}, left by an unfinished package run" in result.stdout
    assert outcome["left"] == sorted([outcome["theirs"], "tornbyanotherproject"]), outcome
    assert not outcome["journal"], "recovery clears the journal it acted on"


def project_folder(folder: Path) -> Path:
    """A folder with a project id of its own, written the way the bake writes it."""
    folder.mkdir(parents=True)
    assert ensure_project_id(folder)
    assert not ensure_project_id(folder), "an id, once written, is kept"
    return folder


def names(uri: str, experiment: str = "fraud", model: str = "fraud") -> DictConfig:
    return OmegaConf.create(
        {"logger": {"tracking_uri": uri, "experiment_name": experiment, "registered_model_name": model}}
    )


def test_one_tracking_store_keeps_two_bakes_apart_and_clones_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two bakes share their default names: on one tracking store the second is refused them, with one line."""
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = project_folder(tmp_path / "first"), project_folder(tmp_path / "second")
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)  # a copy or a clone carries the project's id with it

    monkeypatch.chdir(first)
    configure(names(uri))
    MlflowClient(uri).create_registered_model("fraud")
    configure(names(uri))  # marks the registered model too
    monkeypatch.chdir(copy)
    configure(names(uri))  # a copy is the same project
    monkeypatch.chdir(second)
    with pytest.raises(TrackingError, match=r"the experiment 'fraud' at sqlite:///.* belongs to another project") as no:
        configure(names(uri))
    assert "\n" not in str(no.value), "one line"
    with pytest.raises(TrackingError, match=r"registered model 'fraud' .* logger.registered_model_name=<name>"):
        configure(names(uri, experiment="fraud-2"))
    configure(names(uri, experiment="fraud-2", model="fraud-2"))  # names of its own: accepted
    marks = {e.name: e.tags.get(PROJECT_TAG) for e in MlflowClient(uri).search_experiments()}
    assert marks["fraud"] == project_id(first) and marks["fraud-2"] == project_id(second)
    assert marks["fraud"] != marks["fraud-2"]


def test_a_folder_without_a_project_id_is_refused_before_the_store_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProjectIdentityError, match=r"\.project-id is missing: .* tools/init_project.py"):
        configure(names(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    Path(".project-id").write_text("not an id\n")
    with pytest.raises(ProjectIdentityError, match="not a project id"):
        configure(names(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    assert not (tmp_path / "mlflow.db").exists()


def read_id(journal_file: Path) -> str:
    return str(json.loads(journal_file.read_text())["id"])


def store_env(store: Path) -> dict[str, str]:
    return {"BENTOML_HOME": str(store)}


LOADS = """
import json, sys, bentoml
from pathlib import Path
for tag in sys.argv[1:]:  # each bento, and the model it serves (the package stage labels it), whole
    model = bentoml.bentos.get(tag).info.labels["bento_model"]
    assert Path(bentoml.models.get(model).path_of("model.pt")).is_file(), model
print(json.dumps({str(b.tag): b.info.labels for b in bentoml.bentos.list()}))
"""


def registry_bentos(workspace: Path) -> dict[str, str]:
    """Every version of the workspace's registry, with the bento it was registered with."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    return {str(v.version): v.tags["bento_tag"] for v in client.search_model_versions()}


@pytest.mark.slow
def test_two_projects_in_one_store_lose_nothing(tmp_path_factory: pytest.TempPathFactory) -> None:
    store = tmp_path_factory.mktemp("shared-store") / "bentoml"
    first = make_workspace(tmp_path_factory.mktemp("first"))
    second = make_workspace(tmp_path_factory.mktemp("second"))
    (second / ".project-id").unlink()  # another project: an id of its own (a workspace copies this project's)
    ensure_project_id(second)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "another project"], second)
    named: dict[Path, set[str]] = {first: set(), second: set()}
    repro, forced = ["dvc", "repro"], ["dvc", "repro", "-f"]
    for workspace, command in ((first, repro), (second, repro), (second, forced), (second, forced)):
        run(FAST, workspace)
        run(command, workspace, timeout=900, env=store_env(store))
        named[workspace].add(json.loads((workspace / "reports" / "package.json").read_text())["bento_tag"])
    every = sorted(named[first] | named[second])
    listing = run([sys.executable, "-c", LOADS, *every], first, env=store_env(store))
    labels = json.loads(listing.stdout.splitlines()[-1])
    for workspace in named:
        ours = set(registry_bentos(workspace).values())
        assert named[workspace] <= ours
        assert all(labels[tag]["project_dir"] == str(workspace.resolve()) for tag in ours), "another's version"
        assert all(labels[tag]["project_id"] == project_id(workspace) for tag in ours)
    assert len(named[first]) == 1 and len(named[second]) == 3, named

    # A package run of the second project killed after its journal was written: the next run removes its
    # debris and nothing of the first project's.
    run([*FAST, "serve.timeout_s=41"], second)
    run(["dvc", "repro", "gate"], second, env=store_env(store))
    journal_file = second / JOURNAL
    stage = subprocess.Popen(
        [sys.executable, "pipelines/package.py"],
        cwd=second,
        env={**workspace_env(second), **store_env(store)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not (journal_file.exists() and (store / "models" / MODEL_NAME / read_id(journal_file)).exists()):
        assert stage.poll() is None and time.monotonic() < deadline, "package ended before saving its bento model"
        time.sleep(0.05)
    stage.kill()
    stage.wait()
    killed = read_id(journal_file)
    result = run(["dvc", "repro", "package"], second, env=store_env(store))
    assert f"removed {MODEL_NAME}:{killed}, left by an unfinished package run" in result.stdout
    assert not (store / "models" / MODEL_NAME / killed).exists()
    every.append(json.loads((second / "reports" / "package.json").read_text())["bento_tag"])
    run([sys.executable, "-c", LOADS, *every], first, env=store_env(store))


@pytest.mark.slow
def test_a_copied_project_writes_nothing_into_the_folder_it_came_from(tmp_path_factory: pytest.TempPathFactory) -> None:
    original = make_workspace(tmp_path_factory.mktemp("original"))
    run(FAST, original)
    run(["dvc", "repro"], original, timeout=900)
    copy = tmp_path_factory.mktemp("copy") / original.name
    subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
    # The test workspace pins its DVC cache by absolute path (conftest); a user's project keeps the default.
    run(["dvc", "config", "--local", "--unset", "cache.dir"], copy)
    marker = tmp_path_factory.mktemp("marker") / "marker"
    marker.write_text("")
    time.sleep(1.1)  # file times of the next second
    run(["dvc", "repro", "-f"], copy, timeout=900)
    touched = subprocess.run(
        ["find", str(original), "-newer", str(marker)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert touched == [], touched
