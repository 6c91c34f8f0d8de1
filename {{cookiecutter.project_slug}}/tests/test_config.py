"""Config: params.yaml is conf/ composed, and bad values fail with a readable message."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PROJECT
from omegaconf import OmegaConf

from {{ cookiecutter.package_name }}.config import ConfigError, compose_params, load_config, params_drift


def test_params_yaml_matches_conf() -> None:
    assert params_drift(PROJECT) == "", "params.yaml drifted from conf/: run `python tools/params.py`"


def test_drift_is_detected(tmp_path: Path) -> None:
    (tmp_path / "conf").symlink_to(PROJECT / "conf")
    text = (PROJECT / "params.yaml").read_text().replace("seed: 42", "seed: 43")
    (tmp_path / "params.yaml").write_text(text)
    drift = params_drift(tmp_path)
    assert "-seed: 43" in drift and "+seed: 42" in drift


def test_overrides_compose_like_dvc_exp_run() -> None:
    composed = OmegaConf.create(compose_params(["trainer.max_epochs=2", "debug=fast"], root=PROJECT))
    assert composed.trainer.max_epochs == 2
    assert composed.dataset.thresholds.roc_auc.min == 0.65


def test_unknown_group_option_is_rejected() -> None:
    with pytest.raises(Exception, match="trainer/tpu"):
        compose_params(["trainer=tpu"], root=PROJECT)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=ten", "trainer.max_epochs: expected int, got 'ten'"),
        ("data.batch_size=0", "data.batch_size: must be >= 1"),
        ("model.optimizer.lr=fast", "model.optimizer.lr: expected float"),
        ("trainer.max_epochs=[1,2", "bad override"),
    ],
)
def test_bad_values_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config([override], params_file=PROJECT / "params.yaml")


def test_missing_required_value_is_named(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((PROJECT / "params.yaml").read_text().replace("seed: 42", "seed: ???"))
    with pytest.raises(ConfigError, match="missing required value: seed"):
        load_config(params_file=params)


def test_missing_params_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tools/params\.py"):
        load_config(params_file=tmp_path / "params.yaml")


def test_stage_overrides_switch_groups_like_dvc_exp_run() -> None:
    """`python pipelines/train.py trainer=ddp trainer.num_nodes=2`: the group switch is not lost."""
    cfg = load_config(["trainer=ddp", "trainer.num_nodes=2"], params_file=PROJECT / "params.yaml")
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.num_nodes == 2 and cfg.trainer.accelerator == "gpu"


@pytest.mark.parametrize(
    ("override", "message"),
    [("trainer.foo=1", "bad override trainer.foo=1"), ("trainer=tpu", "bad override trainer=tpu")],
)
def test_overrides_that_cannot_apply_fail_before_anything_runs(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config([override], params_file=PROJECT / "params.yaml")
