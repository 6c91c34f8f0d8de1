"""Registry aliases against a local SQLite tracking store: challenger on pass, champion on approval."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from {{ cookiecutter.package_name }}.data.schema import LABEL_COLUMN
from {{ cookiecutter.package_name }}.lineage import file_md5
from {{ cookiecutter.package_name }}.release.champion import ChampionError, from_registry
from {{ cookiecutter.package_name }}.release.registry import (
    BENTO_TAG,
    CHALLENGER,
    CHAMPION,
    PACKAGE_JOURNAL,
    RegistryError,
    aliased_version,
    promote,
    register_challenger,
    training_run,
    version_of_bento,
)
from {{ cookiecutter.package_name }}.training.artifact import ScoringModel
from {{ cookiecutter.package_name }}.training.model import build_network
from {{ cookiecutter.package_name }}.training.preprocessing import Preprocessor
from {{ cookiecutter.package_name }}.training.tracking import close_stale_runs, shown_uri, start_run, tracking_uri
from tools.init_project import ensure_project_id


@pytest.fixture
def setup(tmp_path: Path, transactions: pd.DataFrame, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    ensure_project_id(tmp_path)  # a project of its own on its store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    cfg = OmegaConf.create(
        {
            "logger": {
                "tracking_uri": "unused",
                "experiment_name": "registry-test",
                "registered_model_name": "registry-test",
            }
        }
    )
    torch.manual_seed(0)
    preprocessor = Preprocessor.fit(transactions)
    model = ScoringModel(
        build_network(len(preprocessor.feature_names), [8], 0.0).eval(),
        preprocessor,
        0.5,
        {"in_features": len(preprocessor.feature_names), "hidden_sizes": [8], "dropout": 0.0},
        {"mlflow_run_id": None},
    )
    model.save(tmp_path / "model.pt")
    example = transactions.drop(columns=[LABEL_COLUMN]).head(3)
    return cfg, tmp_path / "model.pt", example


def test_gate_passed_model_becomes_challenger_then_champion(setup) -> None:
    cfg, path, example = setup
    version = register_challenger(cfg, path, example, {"passed": True}, {"git_commit": "abc"}, "svc:1")
    assert aliased_version(cfg, CHALLENGER) == version and aliased_version(cfg, CHAMPION) is None
    record = promote(cfg, version, approved_by="alice")
    assert aliased_version(cfg, CHAMPION) == version
    assert record["approved_by"] == "alice" and record["approved_at"]
    second = register_challenger(cfg, path, example, {"passed": True}, {"git_commit": "def"}, "svc:2")
    assert promote(cfg, second, approved_by="bob")["previous_champion"] == version


def test_failed_gate_is_never_registered(setup) -> None:
    cfg, path, example = setup
    with pytest.raises(RegistryError, match="gate did not pass"):
        register_challenger(cfg, path, example, {"passed": False}, {}, "svc:1")


def test_promotion_refuses_unknown_or_ungated_versions_and_needs_an_approver(setup) -> None:
    cfg, path, example = setup
    version = register_challenger(cfg, path, example, {"passed": True}, {}, "svc:1")
    with pytest.raises(RegistryError, match="no version '99'"):
        promote(cfg, "99", approved_by="alice")
    with pytest.raises(RegistryError, match="approver"):
        promote(cfg, version, approved_by=" ")
    from mlflow import MlflowClient

    MlflowClient().set_model_version_tag("registry-test", version, "gate_passed", "false")
    with pytest.raises(RegistryError, match="did not pass the gate"):
        promote(cfg, version, approved_by="alice")


def test_a_version_is_registered_with_its_bento_by_a_run_of_the_project_experiment(setup) -> None:
    """No active experiment is set (as in the package stage): the package run must still land in the project's."""
    from mlflow import MlflowClient

    cfg, path, example = setup
    version = register_challenger(cfg, path, example, {"passed": True}, {PACKAGE_JOURNAL: "j1"}, "svc:1")
    tags = MlflowClient().get_model_version("registry-test", version).tags
    assert tags[BENTO_TAG] == "svc:1" and tags[PACKAGE_JOURNAL] == "j1"
    assert version_of_bento(cfg, "svc:1") == version and version_of_bento(cfg, "svc:2") is None
    run = MlflowClient().get_run(tags["package_run_id"])
    project = MlflowClient().get_experiment_by_name("registry-test")
    assert run.info.experiment_id == project.experiment_id and run.info.status == "FINISHED"
    assert run.data.tags["stage"] == "package" and run.data.tags[PACKAGE_JOURNAL] == "j1"


def test_only_the_runs_a_journal_names_are_closed_as_killed(setup) -> None:
    from mlflow import MlflowClient

    cfg, _path, _example = setup
    killed = start_run(cfg, {PACKAGE_JOURNAL: "j1"}, stage="package")
    other = start_run(cfg, {PACKAGE_JOURNAL: "j2"}, stage="package")
    assert close_stale_runs(cfg, PACKAGE_JOURNAL, "j1") == [killed]
    assert MlflowClient().get_run(killed).info.status == "KILLED"
    assert MlflowClient().get_run(other).info.status == "RUNNING"
    assert close_stale_runs(cfg, PACKAGE_JOURNAL, "j1") == []  # closed once


def test_the_training_run_is_looked_up_in_the_project_experiment_only(setup) -> None:
    """Another project on the same server trains the same bytes from the same data: its run is not ours."""
    from mlflow import MlflowClient

    cfg, path, _example = setup
    md5 = file_md5(path)
    client = MlflowClient()
    elsewhere = client.create_run(
        client.create_experiment("another-project"), tags={"stage": "train", "model_md5": md5}
    )
    assert training_run(cfg, md5)["mlflow_run_id"] == "n/a", elsewhere.info.run_id
    ours = start_run(cfg, {"model_md5": md5})
    assert training_run(cfg, md5)["mlflow_run_id"] == ours


def test_the_registry_champion_is_loaded_from_its_alias(setup) -> None:
    cfg, path, example = setup
    assert from_registry(cfg) is None  # no registered model yet
    version = register_challenger(cfg, path, example, {"passed": True}, {"git_commit": "abc"}, "svc:1")
    assert from_registry(cfg) is None  # a challenger is not a champion
    promote(cfg, version, approved_by="alice")
    champion = from_registry(cfg)
    assert champion is not None and champion.reference.endswith(f"v{version}")
    assert champion.source == "registry" and champion.location == f"sqlite:///{path.parent / 'mlflow.db'}"
    assert champion.model_md5 == file_md5(path)
    assert champion.score(example).shape == (len(example),)


def test_an_unreachable_registry_fails_closed(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _path, _example = setup
    # Nothing listens on the discard port; the token in the URI must not reach the report.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ci:s3cret@127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(ChampionError, match="registry could not be read") as raised:
        from_registry(cfg)
    assert "at http://127.0.0.1:9)" in str(raised.value) and "s3cret" not in str(raised.value)


def test_an_empty_tracking_uri_variable_means_the_configured_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI sets MLFLOW_TRACKING_URI from a repository variable, empty where none is configured."""
    cfg = OmegaConf.create({"logger": {"tracking_uri": "sqlite:///mlflow.db"}})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert tracking_uri(cfg) == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ci:token@mlflow.example.com/")
    assert tracking_uri(cfg) == "https://ci:token@mlflow.example.com/"
    assert shown_uri(tracking_uri(cfg)) == "https://mlflow.example.com/"


def test_the_registered_model_ships_scoring_code_only(setup, transactions: pd.DataFrame) -> None:
    """The pyfunc carries what scores a row, not the deploy, release, serving or test code of the project."""
    import mlflow

    cfg, path, example = setup
    version = register_challenger(cfg, path, example, {"passed": True}, {}, "svc:1")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/registry-test/{version}"))
    code = sorted(p.relative_to(local).as_posix() for p in local.rglob("*.py") if "code" in p.relative_to(local).parts)
    assert any(name.endswith("training/artifact.py") for name in code), code
    for unwanted in ("deploy/", "release/", "serving/", "tests/", "tools/", "benchmarks/", "standin", "loadgen"):
        assert not [name for name in code if unwanted in name], f"{unwanted} shipped with the model: {code}"
    loaded = mlflow.pyfunc.load_model(f"models:/registry-test/{version}")
    assert len(loaded.predict(transactions.drop(columns=[LABEL_COLUMN]).head(5))) == 5
