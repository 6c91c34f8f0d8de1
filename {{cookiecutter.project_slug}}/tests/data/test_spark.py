"""The schema's checks on Spark (Pandera's pyspark backend) give the validate stage's verdicts, check by check.

Needs pyspark and Java 17+ (`pip install -e '.[spark]'`); run with `python -m pytest -m spark`.
Without pyspark these tests fail, they do not skip: the default selection leaves them out instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import polars as pl
import pytest

from {{ cookiecutter.package_name }}.data import generate
from {{ cookiecutter.package_name }}.data.schema import ID_COLUMN, TIME_COLUMN
from {{ cookiecutter.package_name }}.data.spark import SparkSchemaError, spark_failures, spark_schema
from {{ cookiecutter.package_name }}.data.validation import row_checks, validate_frame

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = [pytest.mark.spark, pytest.mark.example]  # the example's spoilt columns, on Spark

AS_OF = "2026-01-02T00:00:00Z"


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """A local session as the README sets one up: naive times read as UTC, parquet's too."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("schema-checks")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.inferTimestampNTZ.enabled", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _first_rows(column: str, value: object, count: int = 3) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def spoil(frame: pd.DataFrame) -> pd.DataFrame:
        values = frame[column].to_numpy(dtype=object, copy=True)
        values[:count] = value
        return frame.assign(**{column: pd.Series(values, index=frame.index).astype(frame[column].dtype)})

    return spoil


def _duplicate_key_and_null(frame: pd.DataFrame) -> pd.DataFrame:
    keys = frame[ID_COLUMN].to_numpy(dtype=object, copy=True)
    keys[1] = keys[0]
    keyed = frame.assign(**{ID_COLUMN: pd.Series(keys, index=frame.index, dtype=frame[ID_COLUMN].dtype)})
    return _first_rows("amount", np.nan, count=1)(keyed)


SPOILED: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "clean": lambda frame: frame,
    "feed_errors": lambda frame: generate.inject_invalid_rows(frame, share=0.02, seed=5),
    "duplicate_key_and_null": _duplicate_key_and_null,
    "future_time": _first_rows(TIME_COLUMN, pd.Timestamp("2026-01-03 00:00:01")),  # a second past as_of + slack
    "time_at_the_limit": _first_rows(TIME_COLUMN, pd.Timestamp("2026-01-03 00:00:00")),  # passes
    "ancient_time": _first_rows(TIME_COLUMN, pd.Timestamp("1990-01-01")),
    "empty_id": _first_rows(ID_COLUMN, ""),
    "label_outside_0_1": _first_rows("is_fraud", 2),
    "extra_column": lambda frame: frame.assign(note="x"),
    "missing_column": lambda frame: frame.drop(columns=["amount"]),
    "wrong_dtype": lambda frame: frame.assign(amount=frame["amount"].astype(str)),
}


def polars_pairs(table: pl.DataFrame) -> set[tuple[str, str]]:
    """The (column, check) pairs the validate stage's checks list for `table`, every failure listed."""
    result = validate_frame(
        table, as_of=AS_OF, max_quarantine_share=1.0, max_failures_listed=table.height * table.width + 1
    )
    return {(str(failure["column"]), str(failure["check"])) for failure in result.failures}


@pytest.mark.parametrize("kind", SPOILED)
def test_spark_fails_the_checks_the_validate_stage_lists(
    spark: SparkSession, transactions: pd.DataFrame, kind: str
) -> None:
    table = pl.from_pandas(SPOILED[kind](transactions.head(1000)))
    expected = polars_pairs(table)
    assert (kind in ("clean", "time_at_the_limit")) == (not expected), expected  # each spoiling breaks something
    frame = spark.createDataFrame(table.to_arrow())
    assert set(spark_failures(frame, row_checks(AS_OF))) == expected


def test_spark_reads_the_same_verdicts_from_parquet(
    spark: SparkSession, transactions: pd.DataFrame, tmp_path: Path
) -> None:
    """The README's path: a parquet export read by Spark (times in microseconds; Spark refuses nanoseconds)."""
    table = pl.from_pandas(_duplicate_key_and_null(generate.inject_invalid_rows(transactions, share=0.02, seed=6)))
    table.with_columns(pl.col(TIME_COLUMN).cast(pl.Datetime("us"))).write_parquet(tmp_path / "part-0.parquet")
    frame = spark.read.parquet(str(tmp_path))
    assert set(spark_failures(frame, row_checks(AS_OF))) == polars_pairs(table)


def test_a_check_without_a_spark_builtin_is_refused() -> None:
    spec = row_checks(AS_OF)
    amount = spec.column("amount")
    assert amount is not None and amount.checks
    custom = dataclasses.replace(amount.checks[0], name="my_own_check", label="my_own_check")
    columns = tuple(
        dataclasses.replace(column, checks=(*column.checks, custom)) if column is amount else column
        for column in spec.columns
    )
    with pytest.raises(SparkSchemaError, match="amount: check 'my_own_check' has no built-in"):
        spark_schema(dataclasses.replace(spec, columns=columns))
