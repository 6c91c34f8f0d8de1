"""Behavioural checks (invariance, directional): a model that reads the features backwards fails them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.evaluation.behaviour import behavioural_checks


def test_behavioural_checks_catch_a_model_that_ignores_risk(golden: pd.DataFrame) -> None:
    def backwards(frame: pd.DataFrame) -> np.ndarray:  # riskier rows score lower: every direction is wrong
        return 1.0 / (1.0 + frame["txn_count_1h"].to_numpy() + (~frame["card_present"]).to_numpy())

    results = {r.name: r for r in behavioural_checks(backwards, golden, threshold=0.5)}
    assert results["directional_more_velocity_more_risk"].observed < 0.1
    assert results["directional_card_not_present_more_risk"].observed < 0.5  # rows already without the card stay equal
    assert results["invariance_amount_one_percent"].observed == 0.0  # it never reads the amount
