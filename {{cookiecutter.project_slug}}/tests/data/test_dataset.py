"""Data tests: sample rows pass the schema; the example's generator is seeded and realistic enough (`example`)."""

from __future__ import annotations

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.data import GoldenSchema, RowSchema, generate


@pytest.mark.example
def test_same_seed_same_bytes() -> None:
    pd.testing.assert_frame_equal(
        generate.generate_transactions(500, seed=5), generate.generate_transactions(500, seed=5)
    )
    assert not generate.generate_transactions(500, seed=5).equals(generate.generate_transactions(500, seed=6))


@pytest.mark.example
def test_fraud_is_rare_but_present() -> None:
    frame = generate.generate_transactions(50_000, seed=1)
    assert 0.005 < frame["is_fraud"].mean() < 0.06


def test_generated_rows_pass_the_schema(transactions: pd.DataFrame, golden: pd.DataFrame) -> None:
    RowSchema.validate(transactions, lazy=True)
    GoldenSchema.validate(golden, lazy=True)


@pytest.mark.example
def test_drift_shifts_the_population() -> None:
    base, shifted = (
        generate.generate_transactions(20_000, seed=1),
        generate.generate_transactions(20_000, seed=1, drift=1.0),
    )
    assert shifted["amount"].median() > base["amount"].median() * 1.1
    assert (shifted["card_country"] != shifted["merchant_country"]).mean() > (
        base["card_country"] != base["merchant_country"]
    ).mean()


@pytest.mark.example
def test_golden_set_has_curated_slices_and_is_disjoint_from_training(golden: pd.DataFrame) -> None:
    assert {"sample", "large_legit", "small_fraud", "cross_border"} <= set(golden["slice"])
    assert golden.loc[golden["slice"] == "large_legit", "is_fraud"].eq(0).all()
    assert golden.loc[golden["slice"] == "small_fraud", "is_fraud"].eq(1).all()
    training_ids = set(generate.generate_transactions(5000, seed=1)["transaction_id"])
    assert training_ids.isdisjoint(golden["transaction_id"])


@pytest.mark.example
def test_injected_invalid_rows_are_counted() -> None:
    frame = generate.inject_invalid_rows(generate.generate_transactions(10_000, seed=2), share=0.01, seed=2)
    invalid = (frame["amount"] <= 0) | (frame["merchant_category"] == "unknown") | (frame["txn_count_1h"] > 1000)
    assert invalid.sum() == 100
