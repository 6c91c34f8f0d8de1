"""Nothing invented, nothing lost, no half-results: what the validate stage writes and what train accepts."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import polars as pl
import pytest
from conftest import PROJECT, run

from {{ cookiecutter.package_name }}.data.validation import (
    ValidationNotPassedError,
    read_raw,
    require_validated,
    validate_frame,
    write_outputs,
)
from {{ cookiecutter.package_name }}.stage import run_stage

# These tests spoil the example's own columns (amounts, categories, ids); the engine they test runs on any
# dataset in tests/project/test_adopt_data.py and the template's own-data test.
pytestmark = pytest.mark.example

AS_OF = "2026-01-02T00:00:00Z"


def _stage(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_stage", PROJECT / "pipelines" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _paths(tmp_path: Path, raw: Path) -> list[str]:
    return [
        f"paths.raw={raw}",
        f"paths.validated={tmp_path / 'validated' / 'train.parquet'}",
        f"paths.quarantine={tmp_path / 'validated' / 'quarantine.parquet'}",
        f"paths.reports={tmp_path / 'reports'}",
        f"paths.metrics={tmp_path / 'reports' / 'metrics'}",  # not the project's own reports/metrics
    ]


def _validate(tmp_path: Path, raw: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, Any]]:
    """The validate stage as DVC runs it, in-process; its exit code and report."""
    monkeypatch.chdir(PROJECT)
    code = run_stage("validate", _stage("validate").validate, argv=_paths(tmp_path, raw))
    return code, json.loads((tmp_path / "reports" / "validation.json").read_text())


# ---------------------------------------------------------------- CSV: empty is missing, never 0 or False
def test_empty_cells_are_missing_and_quarantined(tmp_path: Path, transactions: pd.DataFrame) -> None:
    frame = transactions.head(300).astype(str)
    frame["card_present"] = frame["card_present"].str.lower()
    for row, column in enumerate(["account_age_days", "txn_count_1h", "card_present", "is_fraud", "amount"]):
        frame.loc[row, column] = ""
    raw = tmp_path / "raw.csv"
    frame.to_csv(raw, index=False)
    result = validate_frame(read_raw(raw), as_of=AS_OF, max_quarantine_share=0.05, max_failures_listed=1000)
    assert result.passed, result.summary()
    assert {(f["column"], f["check"], f["row"]) for f in result.failures} == {
        ("account_age_days", "not_nullable", 0),
        ("txn_count_1h", "not_nullable", 1),
        ("card_present", "not_nullable", 2),
        ("is_fraud", "not_nullable", 3),
        ("amount", "not_nullable", 4),
    }
    assert result.rows_total == result.rows_valid + result.rows_quarantined == 300
    assert result.rows_quarantined == 5
    # The valid rows are exactly the untouched ones, with their own values (nothing filled in).
    expected = pl.from_pandas(transactions.iloc[5:300].reset_index(drop=True))
    assert result.valid.equals(expected)
    # The quarantine keeps what arrived: the empty cell stays missing, the other cells their text.
    quarantined = result.quarantined
    assert quarantined["account_age_days"][0] is None and quarantined["is_fraud"][3] is None
    assert quarantined["transaction_id"].to_list() == frame["transaction_id"].head(5).to_list()
    assert quarantined["txn_count_1h"][0] == frame.loc[0, "txn_count_1h"]


def test_csv_stage_files_add_up_to_the_input(
    tmp_path: Path, transactions: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = transactions.head(400).astype(str)
    frame.loc[[3, 7], "is_fraud"] = ""
    frame.loc[11, "amount"] = "n/a"
    raw = tmp_path / "raw.csv"
    frame.to_csv(raw, index=False)
    code, report = _validate(tmp_path, raw, monkeypatch)
    assert code == 0 and report["passed"]
    valid = pd.read_parquet(tmp_path / "validated" / "train.parquet")
    quarantine = pd.read_parquet(tmp_path / "validated" / "quarantine.parquet")
    assert (report["rows_total"], report["rows_valid"], report["rows_quarantined"]) == (400, 397, 3)
    assert len(valid) + len(quarantine) == len(frame)
    assert quarantine["amount"].tolist()[2] == "n/a"
    assert valid.dtypes.to_dict() == transactions.dtypes.to_dict()


# ---------------------------------------------------------------- the future is judged against as_of, not the clock
@pytest.mark.parametrize(
    ("event", "as_of", "in_future"),
    [
        ("2026-06-01", "2026-01-02T00:00:00Z", True),  # before today's clock, after the reference: rejected
        ("2100-01-01", "2101-01-01T00:00:00Z", False),  # after today's clock, before the reference: accepted
        ("2026-01-02 23:00", "2026-01-02T00:00:00Z", False),  # within the day of slack
        ("2026-01-03 00:30", "2026-01-02T00:00:00Z", True),
        ("2026-01-03 00:30", "2026-01-02T01:00:00+01:00", True),  # the same instant, said in another zone
        ("2026-01-03 00:30", "2026-01-02T00:30:00-01:00", False),  # 01:30 UTC
    ],
)
def test_future_is_judged_against_the_reference(
    transactions: pd.DataFrame, event: str, as_of: str, in_future: bool
) -> None:
    frame = transactions.head(50).copy()
    frame.loc[0, "event_time"] = pd.Timestamp(event)
    result = validate_frame(frame, as_of=as_of, max_quarantine_share=0.05)
    assert result.rows_quarantined == int(in_future)
    assert [f["check"].split("(")[0] for f in result.failures] == (["not_in_future"] if in_future else [])


# ---------------------------------------------------------------- a rejected file changes no data file
REJECTED = {
    "30% bad rows": lambda f: f.assign(amount=f["amount"].where(f.index % 10 >= 3, -1.0)),
    "missing column": lambda f: f.drop(columns=["amount"]),
    "extra column": lambda f: f.assign(note="x"),
    "wrong dtype": lambda f: f.assign(txn_count_1h=f["txn_count_1h"].astype("float64")),
}


@pytest.mark.parametrize("kind", REJECTED)
def test_rejected_file_leaves_validated_data_as_it_was(
    tmp_path: Path, transactions: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    raw = tmp_path / "raw.parquet"
    transactions.to_parquet(raw, index=False)
    code, report = _validate(tmp_path, raw, monkeypatch)
    assert code == 0 and report["passed"]
    validated = tmp_path / "validated"
    before = {path.name: path.read_bytes() for path in validated.iterdir()}
    REJECTED[kind](transactions).to_parquet(raw, index=False)
    code, report = _validate(tmp_path, raw, monkeypatch)
    assert code == 1 and report["passed"] is False and report["valid_md5"] is None
    assert {path.name: path.read_bytes() for path in validated.iterdir()} == before
    with pytest.raises(ValidationNotPassedError, match="validation did not pass"):
        require_validated(tmp_path / "reports" / "validation.json", validated / "train.parquet")


def test_a_failed_write_leaves_no_file_behind(
    tmp_path: Path, transactions: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = (tmp_path / "train.parquet", tmp_path / "quarantine.parquet", tmp_path / "validation.json")
    for path in paths:
        path.write_bytes(b"previous version")
    result = validate_frame(transactions, as_of=AS_OF, max_quarantine_share=0.05)

    # The valid rows are written from the table (a sink), the quarantine as a frame: both writers fail alike.
    writers, calls = {"write_parquet": pl.DataFrame.write_parquet, "sink_parquet": pl.LazyFrame.sink_parquet}, []

    def disk_full(writer: str) -> Any:
        def write(self: pl.DataFrame | pl.LazyFrame, path: Path, **options: Any) -> Any:
            calls.append(path)
            if len(calls) == 1:  # the valid rows are written whole, then the disk fills up
                return writers[writer](self, path, **options)  # type: ignore[operator]
            Path(path).write_bytes(b"half a file")
            raise OSError("No space left on device")

        return write

    monkeypatch.setattr(pl.DataFrame, "write_parquet", disk_full("write_parquet"))
    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", disk_full("sink_parquet"))
    with pytest.raises(OSError, match="No space left"):
        write_outputs(result, *paths)
    assert len(calls) == 2
    assert [path.read_bytes() for path in paths] == [b"previous version"] * 3
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in paths)


# ---------------------------------------------------------------- train reads only what validation vouched for
def test_train_data_must_be_the_file_validation_passed(
    tmp_path: Path, transactions: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw.parquet"
    transactions.to_parquet(raw, index=False)
    report, validated = tmp_path / "reports" / "validation.json", tmp_path / "validated" / "train.parquet"
    with pytest.raises(ValidationNotPassedError, match="not found"):
        require_validated(report, validated)
    _validate(tmp_path, raw, monkeypatch)
    require_validated(report, validated)  # the file the report vouches for: accepted
    pd.read_parquet(validated).head(10).to_parquet(validated, index=False)
    with pytest.raises(ValidationNotPassedError, match="md5 differs"):
        require_validated(report, validated)


def test_train_stage_refuses_unvalidated_data_and_writes_nothing(tmp_path: Path) -> None:
    reports, models = tmp_path / "reports", tmp_path / "models"
    reports.mkdir()
    (reports / "validation.json").write_text(json.dumps({"passed": False, "frame_errors": ["missing column 'x'"]}))
    result = run(
        [
            sys.executable,
            "pipelines/train.py",
            f"paths.reports={reports}",
            f"paths.model={models / 'model.pt'}",
            f"paths.checkpoints={models / 'checkpoints'}",
            f"paths.validated={tmp_path / 'train.parquet'}",
        ],
        PROJECT,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert errors == [
        "[train] ERROR: validation did not pass ("
        + str(reports / "validation.json")
        + ": missing column 'x'): refusing to train"
    ]
    assert "Traceback" not in result.stderr
    assert not models.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["reports"]


def test_validate_stage_imports_no_training_or_serving_stack() -> None:
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('stage', 'pipelines/validate.py')\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'lightning', 'mlflow', 'bentoml'}))\n"
    )
    result = run([sys.executable, "-c", code], PROJECT)
    assert result.stdout.strip() == "[]"


def test_validate_stage_checks_without_pandas_pandera_or_pyspark_once_translated() -> None:
    code = (
        "import importlib.util, sys\n"
        "from omegaconf import OmegaConf\n"
        "spec = importlib.util.spec_from_file_location('stage', 'pipelines/validate.py')\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "from {{ cookiecutter.package_name }}.data.validation import row_checks\n"
        "row_checks(OmegaConf.load('params.yaml').data.validation.as_of)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'pandera', 'pyspark'}))\n"
    )
    run([sys.executable, "-c", code], PROJECT)  # the first run may translate the schema (and cache it)
    result = run([sys.executable, "-c", code], PROJECT)
    assert result.stdout.strip() == "[]"
