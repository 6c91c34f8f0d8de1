"""Behavioural checks, declared as data: each kind, the edit language, and a clear error for a bad declaration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT
from omegaconf import OmegaConf

from {{ cookiecutter.package_name }}.evaluation.behaviour import BehaviourSpecError, behavioural_checks, edited

DECLARED = OmegaConf.to_container(OmegaConf.load(PROJECT / "params.yaml").dataset.behaviour)


def test_every_declared_check_runs_and_is_reported_by_name(golden: pd.DataFrame) -> None:
    results = behavioural_checks(lambda frame: np.full(len(frame), 0.5), golden, 0.5, DECLARED)
    declared = [spec["name"] for kind in DECLARED.values() for spec in kind or ()]
    assert [r.name for r in results] == declared
    assert all(r.observed == 0.0 for r in results if r.kind == "invariance")  # a constant model never moves


def test_a_model_that_reads_a_column_backwards_fails_its_directional_check() -> None:
    rows = pd.DataFrame({"x": np.linspace(0.0, 1.0, 50), "y": np.ones(50)})
    declared = {"directional": [{"name": "more_x_more_risk", "set": {"x": {"add": 0.5}}, "expect": "up"}]}
    backwards = behavioural_checks(lambda f: 1.0 - f["x"].to_numpy() / 2, rows, 0.5, declared)
    forwards = behavioural_checks(lambda f: f["x"].to_numpy() / 2, rows, 0.5, declared)
    assert backwards[0].observed == 0.0 and forwards[0].observed == 1.0


def test_minimum_functionality_counts_the_obvious_cases_on_the_right_side() -> None:
    rows = pd.DataFrame({"x": np.zeros(10)})
    declared = {
        "minimum_functionality": [
            {"name": "flagged", "set": {"x": 1.0}, "expect": "positive"},
            {"name": "cleared", "set": {"x": 0.0}, "expect": "negative"},
        ]
    }
    results = {r.name: r.observed for r in behavioural_checks(lambda f: f["x"].to_numpy(), rows, 0.5, declared)}
    assert results == {"flagged": 1.0, "cleared": 1.0}


def test_the_edit_language() -> None:
    rows = pd.DataFrame(
        {
            "amount": [0.5, 10.0],
            "count": np.array([1, 2], dtype=np.int64),
            "home": ["NG", "US"],
            "at": pd.to_datetime(["2025-01-01 17:30", "2025-02-03 08:00"]),
        }
    )
    out = edited(
        rows,
        {
            "amount": {"at_least": 1.0, "multiply": 2, "add": 1},
            "count": {"add": 5},
            "home": {"differs_from": "home", "choices": ["NG", "BR"]},
            "at": {"hour": 3},
        },
        "test",
    )
    assert out["amount"].tolist() == [3.0, 21.0]
    assert out["count"].tolist() == [6, 7] and out["count"].dtype == np.int64
    assert out["home"].tolist() == ["BR", "NG"]
    assert out["at"].dt.hour.tolist() == [3, 3] and out["at"].dt.day.tolist() == [1, 3]


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"invariance": [{"name": "n", "set": {"nope": {"add": 1}}}]}, "no column 'nope'"),
        ({"invariance": [{"name": "n", "set": {"x": {"times": 2}}}]}, "unknown key"),
        ({"directional": [{"name": "n", "set": {"x": 1.0}, "expect": "sideways"}]}, "up or down"),
        ({"sideways": []}, "unknown kind"),
    ],
)
def test_a_bad_declaration_is_one_clear_error(declared: dict, message: str) -> None:
    rows = pd.DataFrame({"x": np.zeros(3)})
    with pytest.raises(BehaviourSpecError, match=message):
        behavioural_checks(lambda f: f["x"].to_numpy(), rows, 0.5, declared)
