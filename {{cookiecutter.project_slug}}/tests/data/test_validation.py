"""Validation: every kind of bad input is named, no row is lost, the stage fails when it must."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import polars as pl
import pytest
from pandera.errors import SchemaErrors

from {{ cookiecutter.package_name }}.data import generate, validation
from {{ cookiecutter.package_name }}.data.rows import row_schema
from {{ cookiecutter.package_name }}.data.validation import (
    REASONS_COLUMN,
    DataFileError,
    file_md5,
    read_raw,
    row_checks,
    schema_failures,
    schema_spec,
    validate_file,
    validate_frame,
    write_outputs,
)

# These tests spoil the example's own columns (amounts, categories, ids); the engine they test runs on any
# dataset in tests/project/test_adopt_data.py and the template's own-data test.
pytestmark = pytest.mark.example

LIMIT = 0.05
AS_OF = "2026-01-02T00:00:00Z"


def _set(column: str, value: object, rows: slice = slice(0, 3)) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def spoil(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        values = frame[column].to_numpy(dtype=object, copy=True)
        values[rows] = value
        frame[column] = pd.Series(values, index=frame.index).astype(frame[column].dtype)
        return frame

    return spoil


ROW_FAILURES = {
    "negative_amount": (_set("amount", -10.0), "amount", "greater_than"),
    "absurd_amount": (_set("amount", 5e9), "amount", "less_than_or_equal_to"),
    "unknown_category": (_set("merchant_category", "casino"), "merchant_category", "isin"),
    "future_timestamp": (_set("event_time", pd.Timestamp("2100-01-01")), "event_time", "not_in_future"),
    "ancient_timestamp": (_set("event_time", pd.Timestamp("1990-01-01")), "event_time", "greater_than_or_equal_to"),
    "label_outside_0_1": (_set("is_fraud", 2), "is_fraud", "isin"),
    "null_amount": (_set("amount", np.nan), "amount", "not_nullable"),
    "negative_velocity": (_set("txn_count_1h", -1), "txn_count_1h", "greater_than_or_equal_to"),
}
FRAME_FAILURES = {
    "missing_column": (lambda f: f.drop(columns=["amount"]), "missing column 'amount'"),
    "extra_column": (lambda f: f.assign(note="x"), "unexpected column 'note'"),
    "wrong_dtype": (lambda f: f.assign(amount=f["amount"].astype(str)), "column 'amount' has dtype"),
    "duplicate_ids": (lambda f: f.assign(transaction_id=["same"] * len(f)), "duplicate key values"),
    "header_only": (lambda f: f.iloc[0:0], "no data rows"),
}


@pytest.mark.parametrize("kind", ROW_FAILURES)
def test_row_failure_is_quarantined_with_its_reason(transactions: pd.DataFrame, kind: str) -> None:
    spoil, column, check = ROW_FAILURES[kind]
    result = validate_frame(spoil(transactions), as_of=AS_OF, max_quarantine_share=LIMIT)
    assert result.rows_quarantined == 3
    assert result.rows_total == result.rows_valid + result.rows_quarantined == len(transactions)
    assert result.passed, result.summary()
    assert {(f["column"], f["check"].split("(")[0]) for f in result.failures} == {(column, check)}
    assert all(f["row"] in (0, 1, 2) for f in result.failures)
    assert result.quarantined[REASONS_COLUMN].str.contains(column).all()


@pytest.mark.parametrize("kind", FRAME_FAILURES)
def test_frame_failure_fails_the_file(transactions: pd.DataFrame, kind: str) -> None:
    spoil, message = FRAME_FAILURES[kind]
    result = validate_frame(spoil(transactions), as_of=AS_OF, max_quarantine_share=LIMIT)
    assert not result.passed
    assert any(message in error for error in result.frame_errors), result.frame_errors
    assert result.rows_total == result.rows_valid + result.rows_quarantined


def test_all_rows_bad_fails_on_the_share(transactions: pd.DataFrame) -> None:
    result = validate_frame(transactions.assign(amount=-1.0), as_of=AS_OF, max_quarantine_share=LIMIT)
    assert not result.passed
    assert result.rows_quarantined == result.rows_total == len(transactions)
    assert any("exceeds the limit" in error for error in result.frame_errors)


def test_failures_listed_are_capped_but_counted(transactions: pd.DataFrame) -> None:
    result = validate_frame(
        transactions.assign(amount=-1.0), as_of=AS_OF, max_quarantine_share=1.0, max_failures_listed=7
    )
    assert len(result.failures) == 7
    assert result.failures_total == len(transactions)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.parquet", b"", "empty (0 bytes)"),
        ("truncated.parquet", b"PAR1\x00\x01garbage", "cannot be read as parquet"),
        ("data.json", b"{}", "unsupported format '.json'"),
        ("latin1.csv", "transaction_id,amount\ncaf\xe9,1.0\n".encode("latin-1"), "not valid UTF-8"),
    ],
)
def test_unreadable_files_get_one_clear_error(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_raw(path)


def test_csv_with_unparsable_values_quarantines_those_rows(tmp_path: Path, transactions: pd.DataFrame) -> None:
    path = tmp_path / "raw.csv"
    frame = transactions.head(200).astype(str)
    frame.loc[0, "event_time"] = "yesterday-ish"
    frame.loc[1, "amount"] = "12,50 EUR"
    frame.loc[2, "account_age_days"] = "3.5"
    frame.to_csv(path, index=False)
    result = validate_frame(read_raw(path), as_of=AS_OF, max_quarantine_share=LIMIT)
    assert result.passed, result.summary()
    assert result.rows_quarantined == 3 and result.rows_valid == 197
    assert {(f["column"], f["check"], f["row"], f["value"]) for f in result.failures} == {
        ("event_time", "parses_as_datetime64[ns]", 0, "yesterday-ish"),
        ("amount", "parses_as_float64", 1, "12,50 EUR"),
        ("account_age_days", "parses_as_int64", 2, "3.5"),
    }
    # The quarantine keeps the text that arrived; the valid rows are typed as the schema says.
    assert result.quarantined["amount"].to_list()[1] == "12,50 EUR"
    assert result.valid.schema == pl.from_pandas(transactions).schema


def test_outputs_follow_the_report_contract(tmp_path: Path, transactions: pd.DataFrame) -> None:
    result = validate_frame(_set("amount", -1.0)(transactions), as_of=AS_OF, max_quarantine_share=LIMIT)
    write_outputs(result, tmp_path / "valid.parquet", tmp_path / "quarantine.parquet", tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"passed", "rows_total", "rows_valid", "rows_quarantined", "failures"} <= set(report)
    assert (
        len(pd.read_parquet(tmp_path / "valid.parquet")) + len(pd.read_parquet(tmp_path / "quarantine.parquet"))
        == report["rows_total"]
    )
    assert report["valid_md5"] == file_md5(tmp_path / "valid.parquet")
    # Training reads the valid rows with pandas: same columns and dtypes as the raw frame.
    assert pd.read_parquet(tmp_path / "valid.parquet").dtypes.to_dict() == transactions.dtypes.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quarantine.parquet", "report.json", "valid.parquet"]


# ---------------------------------------------------------------- the fast path answers as Pandera does
def _pandera_row_failures(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> set[tuple[str, str, int]]:
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases[errors.failure_cases["index"].notna()]
        return {(str(c.column), str(c.check), int(c.index)) for c in cases.itertuples()}
    return set()


def _fast_row_failures(frame: pd.DataFrame, schema: pa.DataFrameSchema) -> set[tuple[str, str, int]]:
    rows, frame_level, _ = schema_failures(pl.from_pandas(frame), schema)
    # Pandera lists duplicate keys row by row too; here they fail the file instead of quarantining.
    listed = pl.concat([rows, frame_level.drop_nulls("row")])
    return set(listed.select("column", "check", "row").iter_rows())


def test_fast_path_and_pandera_agree_on_a_spoiled_frame(transactions: pd.DataFrame) -> None:
    frame = generate.inject_invalid_rows(transactions, share=0.05, seed=1)
    for column, value, rows in (
        ("amount", np.nan, slice(10, 14)),
        ("amount", 5e9, slice(20, 22)),
        ("event_time", pd.Timestamp("2100-01-01"), slice(30, 33)),
        ("event_time", pd.Timestamp("1990-01-01"), slice(40, 41)),
        ("is_fraud", 2, slice(50, 55)),
        ("transaction_id", "", slice(60, 62)),  # too short, and a duplicate key
        ("card_country", "XX", slice(70, 75)),
        ("distance_from_home_km", 30_000.0, slice(80, 81)),
    ):
        frame = _set(column, value, rows)(frame)
    schema = row_schema(AS_OF)
    expected = _pandera_row_failures(frame, schema)
    assert len(expected) > 200  # every kind above, and the injected ones
    assert {column for column, _, _ in expected} >= {"amount", "event_time", "is_fraud", "transaction_id"}
    assert _fast_row_failures(frame, schema) == expected


NUMBERS = pd.Series([-2.0, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, np.nan], dtype="float64")
TEXTS = pd.Series(["", "a", "ab", "abc", "xyz", "é", None], dtype="str")
CHECKS = {
    "gt": (NUMBERS, pa.Check.gt(0)),
    "ge": (NUMBERS, pa.Check.ge(0)),
    "lt": (NUMBERS, pa.Check.lt(2)),
    "le": (NUMBERS, pa.Check.le(2)),
    "eq": (NUMBERS, pa.Check.eq(1)),
    "ne": (NUMBERS, pa.Check.ne(1)),
    "in_range": (NUMBERS, pa.Check.in_range(0, 2)),
    "in_range_open": (NUMBERS, pa.Check.in_range(0, 2, include_min=False, include_max=False)),
    "isin_few": (NUMBERS, pa.Check.isin([0.0, 2.0])),
    "isin_many": (NUMBERS, pa.Check.isin([float(v) for v in range(-1, 40)])),
    "notin": (NUMBERS, pa.Check.notin([1.0, 3.0])),
    "custom_numbers": (NUMBERS, pa.Check(lambda s: s % 2 == 0, name="even")),
    "str_length_min": (TEXTS, pa.Check.str_length(1)),
    "str_length_min_2": (TEXTS, pa.Check.str_length(2)),
    "str_length_range": (TEXTS, pa.Check.str_length(1, 2)),
    "isin_text": (TEXTS, pa.Check.isin(["a", "abc"])),
    "startswith": (TEXTS, pa.Check.str_startswith("a")),
    "endswith": (TEXTS, pa.Check.str_endswith("c")),
    "custom_text": (TEXTS, pa.Check(lambda s: s.str.len() % 2 == 0, name="even_length")),
}


@pytest.mark.parametrize("kind", CHECKS)
def test_each_check_gives_pandera_verdict(kind: str) -> None:
    values, check = CHECKS[kind]
    for nullable in (True, False):
        schema = pa.DataFrameSchema({"x": pa.Column(values.dtype, checks=check, nullable=nullable)})
        frame = pd.DataFrame({"x": values})
        expected = _pandera_row_failures(frame, schema)
        assert expected  # the values break every check somewhere
        assert _fast_row_failures(frame, schema) == expected


def test_a_row_keeps_every_reason(transactions: pd.DataFrame) -> None:
    frame = _set("is_fraud", 2, slice(5, 6))(_set("amount", -3.0, slice(5, 7))(transactions))
    result = validate_frame(frame, as_of=AS_OF, max_quarantine_share=LIMIT)
    assert result.rows_quarantined == 2 and result.failures_total == 3
    assert result.quarantined[REASONS_COLUMN].to_list() == [
        "amount: greater_than(0.0) (got -3.0); is_fraud: isin([0, 1]) (got 2)",
        "amount: greater_than(0.0) (got -3.0)",
    ]


# ---------------------------------------------------------------- the streaming engine gives the in-memory verdict
def _validate_into(out: Path, raw: Path, **options: Any) -> tuple[Any, dict[str, Any]]:
    """`validate_file` with its outputs in `out` (streamed where `stream_from_mb=0.0`)."""
    paths = (out / "valid.parquet", out / "quarantine.parquet", out / "report.json")
    return validate_file(raw, *paths, as_of=AS_OF, **options)


def _both_ways(tmp_path: Path, raw: Path, **options: Any) -> list[tuple[dict[str, Any], list[bytes]]]:
    outcomes = []
    for name, stream_from_mb in (("memory", 1e9), ("stream", 0.0)):
        out = tmp_path / name
        _, report = _validate_into(out, raw, stream_from_mb=stream_from_mb, row_group_size=1000, **options)
        files = [path.read_bytes() for path in (out / "valid.parquet", out / "quarantine.parquet") if path.exists()]
        outcomes.append((report, files))
    return outcomes


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_streamed_and_in_memory_outputs_are_identical(tmp_path: Path, transactions: pd.DataFrame, suffix: str) -> None:
    frame = _set("is_fraud", 2, slice(5, 6))(generate.inject_invalid_rows(transactions, share=0.02, seed=4))
    raw = tmp_path / f"raw{suffix}"
    if suffix == ".csv":
        frame = frame.astype(str)
        frame.loc[9, "amount"] = "12,50 EUR"
        frame.to_csv(raw, index=False)
    else:
        frame.to_parquet(raw, index=False)
    (memory, memory_files), (stream, stream_files) = _both_ways(
        tmp_path, raw, max_quarantine_share=LIMIT, max_failures_listed=30
    )
    assert memory["passed"] and memory["rows_quarantined"] > 80  # the 80 injected, and the rows spoiled here
    assert memory["failures_total"] > 80 and len(memory["failures"]) == 30
    assert stream == memory
    assert len(stream_files) == 2 and stream_files == memory_files  # byte for byte


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_streamed_duplicate_keys_fail_the_file(tmp_path: Path, transactions: pd.DataFrame, order: str) -> None:
    frame = transactions.sort_values("transaction_id").reset_index(drop=True)
    frame.loc[[10, 11, 3000], "transaction_id"] = frame.loc[10, "transaction_id"]
    if order == "shuffled":
        frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    raw = tmp_path / "raw.parquet"
    frame.to_parquet(raw, index=False)
    (memory, _), (stream, stream_files) = _both_ways(tmp_path, raw, max_quarantine_share=LIMIT)
    assert stream == memory and not stream["passed"] and stream_files == []
    assert stream["failures_total"] == 3
    assert [f["check"] for f in stream["failures"]] == ["field_uniqueness"] * 3
    assert any("duplicate key values" in error for error in stream["frame_errors"])


def test_a_streamed_file_over_the_quarantine_share_is_never_copied(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, transactions: pd.DataFrame
) -> None:
    raw = tmp_path / "raw.parquet"
    generate.inject_invalid_rows(transactions, share=0.2, seed=5).to_parquet(raw, index=False)

    def copy(*args: object) -> None:
        raise AssertionError("the valid rows of a rejected file were copied")

    monkeypatch.setattr(validation._Plan, "valid_rows_except", copy)
    out = tmp_path / "out"
    result, report = _validate_into(out, raw, max_quarantine_share=LIMIT, stream_from_mb=0.0)
    assert not result.passed and "quarantined share" in report["frame_errors"][0]
    assert sorted(path.name for path in out.iterdir()) == ["report.json"]


def test_a_file_replaced_between_the_streamed_passes_publishes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, transactions: pd.DataFrame
) -> None:
    raw = tmp_path / "raw.parquet"
    transactions.to_parquet(raw, index=False)
    out = tmp_path / "out"
    seen = iter([(1, 1, 1), (2, 2, 2)])  # another file (inode, size, mtime) when the second pass ends
    monkeypatch.setattr(validation, "_identity", lambda path: next(seen))
    with pytest.raises(DataFileError, match="changed while it was validated"):
        _validate_into(out, raw, max_quarantine_share=LIMIT, stream_from_mb=0.0)
    assert not out.exists() or sorted(path.name for path in out.iterdir()) == []


@pytest.mark.parametrize(
    ("keys", "increasing"),
    [
        (["a", "b", "c", "d"], True),
        (["a", "b", "b", "c"], False),  # equal neighbours: a duplicate
        (["a", "c", "b", "d"], False),  # a step down
        (["a", None, "b"], False),  # a missing key
        (["a"], True),
    ],
)
def test_strict_increase_is_one_rule_in_memory_and_across_stream_batches(
    tmp_path: Path, keys: list[str | None], increasing: bool
) -> None:
    # One row per row group: every neighbour pair straddles a batch boundary of the stream.
    path = tmp_path / "keys.parquet"
    pl.DataFrame({"k": keys}, schema={"k": pl.String}).write_parquet(path, row_group_size=1)
    in_memory = pl.read_parquet(path).select(validation._strictly_increasing_expr("k")).item()
    streamed = validation._strictly_increasing(pl.scan_parquet(path))
    assert in_memory == streamed == increasing


def test_cached_checks_are_the_schema_translated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fresh = schema_spec(row_schema(AS_OF), as_of="")
    cache = tmp_path / "schema-checks.json"
    monkeypatch.setattr(validation, "_cache_path", lambda as_of: cache)
    validation._row_checks.cache_clear()
    written = row_checks(AS_OF)
    assert cache.exists()
    validation._row_checks.cache_clear()
    read_back = row_checks(AS_OF)
    assert read_back == written and read_back.columns == fresh.columns
    validation._row_checks.cache_clear()
