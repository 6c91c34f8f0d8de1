"""Behavioural checks on the golden set: invariance, directional and minimum functionality.

Each check perturbs real golden rows the way the domain says should (or should
not) move the score and reports what it observed, by name; the gate judges the
observations against the limits in conf/gate (one limit per kind of check).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..data.schema import LABEL_COLUMN, SLICE_COLUMN

Scorer = Callable[[pd.DataFrame], np.ndarray]


@dataclasses.dataclass
class BehaviourResult:
    name: str
    kind: str  # invariance: largest score change; directional, minimum_functionality: share of rows that behave
    observed: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _invariant(
    name: str, change: Callable[[pd.DataFrame], pd.DataFrame], detail: str
) -> Callable[[Scorer, pd.DataFrame], BehaviourResult]:
    """Largest score change from an edit to a column the model reads that should barely matter.

    Edits to columns the model never reads could not fail; these can (an unstable model, a feature
    that blows up small differences), so the limit in conf/gate is a real bound.
    """

    def check(score: Scorer, rows: pd.DataFrame) -> BehaviourResult:
        return BehaviourResult(name, "invariance", float(np.max(np.abs(score(change(rows)) - score(rows)))), detail)

    return check


INVARIANCE_CHECKS = (
    _invariant(
        "invariance_amount_one_percent",
        lambda r: r.assign(amount=r["amount"] * 1.01),
        "spending 1% more must not move any score by more than the limit",
    ),
    _invariant(
        "invariance_account_one_day_older",
        lambda r: r.assign(account_age_days=r["account_age_days"] + 1),
        "an account one day older must not move any score by more than the limit",
    ),
    _invariant(
        "invariance_distance_five_percent",
        lambda r: r.assign(distance_from_home_km=r["distance_from_home_km"] * 1.05),
        "5% further from home must not move any score by more than the limit",
    ),
)


def _directional(
    name: str, change: Callable[[pd.DataFrame], pd.DataFrame], detail: str
) -> Callable[[Scorer, pd.DataFrame], BehaviourResult]:
    def check(score: Scorer, rows: pd.DataFrame) -> BehaviourResult:
        share = float(np.mean(score(change(rows)) >= score(rows) - 1e-9))
        return BehaviourResult(name, "directional", share, detail)

    return check


def _minimum_functionality(score: Scorer, rows: pd.DataFrame, threshold: float) -> list[BehaviourResult]:
    obvious_fraud = rows.assign(
        amount=rows["amount_avg_30d"] * 40 + 500,
        card_present=False,
        txn_count_1h=12,
        account_age_days=2,
        merchant_country=np.where(rows["card_country"] == "NG", "BR", "NG"),
        merchant_category="jewelry",
        event_time=rows["event_time"].dt.normalize() + pd.Timedelta(hours=3),
        distance_from_home_km=5000.0,
    )
    obvious_legit = rows.assign(
        amount=rows["amount_avg_30d"].clip(lower=1.0) * 0.5,
        card_present=True,
        txn_count_1h=0,
        account_age_days=3000,
        merchant_country=rows["card_country"],
        merchant_category="grocery",
        event_time=rows["event_time"].dt.normalize() + pd.Timedelta(hours=14),
        distance_from_home_km=2.0,
    )
    flagged = float(np.mean(score(obvious_fraud) >= threshold))
    cleared = float(np.mean(score(obvious_legit) < threshold))
    return [
        BehaviourResult(
            "mft_obvious_fraud_flagged",
            "minimum_functionality",
            flagged,
            "night, card-not-present, cross-border jewellery at 40x the usual spend on a new account",
        ),
        BehaviourResult(
            "mft_obvious_legit_cleared",
            "minimum_functionality",
            cleared,
            "daytime card-present domestic grocery at half the usual spend on an old account",
        ),
    ]


DIRECTIONAL_CHECKS = (
    _directional(
        "directional_more_velocity_more_risk",
        lambda r: r.assign(txn_count_1h=r["txn_count_1h"] + 5),
        "five more transactions in the last hour must not lower the score",
    ),
    _directional(
        "directional_card_not_present_more_risk",
        lambda r: r.assign(card_present=False),
        "the same purchase without the card present must not look safer",
    ),
)


def behavioural_checks(
    score: Scorer, golden: pd.DataFrame, threshold: float, sample: int = 2000, seed: int = 0
) -> list[BehaviourResult]:
    rows = golden.drop(columns=[LABEL_COLUMN, SLICE_COLUMN], errors="ignore")
    rows = rows.sample(n=min(sample, len(rows)), random_state=seed).reset_index(drop=True)
    results = [check(score, rows) for check in (*INVARIANCE_CHECKS, *DIRECTIONAL_CHECKS)]
    results += _minimum_functionality(score, rows, threshold)
    return results
