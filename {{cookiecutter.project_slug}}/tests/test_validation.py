"""Validation: every kind of bad input is named, no row is lost, the stage fails when it must."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.data.validation import (
    REASONS_COLUMN,
    DataFileError,
    read_table,
    validate_frame,
    write_outputs,
)

LIMIT = 0.05


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
    result = validate_frame(spoil(transactions), max_quarantine_share=LIMIT)
    assert result.rows_quarantined == 3
    assert result.rows_total == result.rows_valid + result.rows_quarantined == len(transactions)
    assert result.passed, result.summary()
    assert {(f["column"], f["check"].split("(")[0]) for f in result.failures} == {(column, check)}
    assert all(f["row"] in (0, 1, 2) for f in result.failures)
    assert result.quarantined[REASONS_COLUMN].str.contains(column).all()


@pytest.mark.parametrize("kind", FRAME_FAILURES)
def test_frame_failure_fails_the_file(transactions: pd.DataFrame, kind: str) -> None:
    spoil, message = FRAME_FAILURES[kind]
    result = validate_frame(spoil(transactions), max_quarantine_share=LIMIT)
    assert not result.passed
    assert any(message in error for error in result.frame_errors), result.frame_errors
    assert result.rows_total == result.rows_valid + result.rows_quarantined


def test_all_rows_bad_fails_on_the_share(transactions: pd.DataFrame) -> None:
    result = validate_frame(transactions.assign(amount=-1.0), max_quarantine_share=LIMIT)
    assert not result.passed
    assert result.rows_quarantined == result.rows_total == len(transactions)
    assert any("exceeds the limit" in error for error in result.frame_errors)


def test_failures_listed_are_capped_but_counted(transactions: pd.DataFrame) -> None:
    result = validate_frame(transactions.assign(amount=-1.0), max_quarantine_share=1.0, max_failures_listed=7)
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
        read_table(path)


def test_csv_with_unparsable_values_quarantines_those_rows(tmp_path: Path, transactions: pd.DataFrame) -> None:
    path = tmp_path / "raw.csv"
    frame = transactions.head(200).astype(str)
    frame.loc[0, "event_time"] = "yesterday-ish"
    frame.loc[1, "amount"] = "12,50 EUR"
    frame.loc[2, "account_age_days"] = "3.5"
    frame.to_csv(path, index=False)
    result = validate_frame(read_table(path), max_quarantine_share=LIMIT)
    assert result.passed, result.summary()
    assert result.rows_quarantined == 3 and result.rows_valid == 197
    values = {f["value"] for f in result.failures}
    assert {"yesterday-ish", "12,50 EUR", "3.5"} <= values


def test_outputs_follow_the_report_contract(tmp_path: Path, transactions: pd.DataFrame) -> None:
    result = validate_frame(_set("amount", -1.0)(transactions), max_quarantine_share=LIMIT)
    write_outputs(result, tmp_path / "valid.parquet", tmp_path / "quarantine.parquet", tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    assert {"passed", "rows_total", "rows_valid", "rows_quarantined", "failures"} <= set(report)
    assert (
        len(pd.read_parquet(tmp_path / "valid.parquet")) + len(pd.read_parquet(tmp_path / "quarantine.parquet"))
        == report["rows_total"]
    )
