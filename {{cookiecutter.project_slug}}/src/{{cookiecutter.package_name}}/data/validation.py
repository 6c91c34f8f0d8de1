"""Validate a raw data file against the schema without losing a row.

Every failing check is listed (column, check, row, value); rows that fail a
row-level check go to quarantine with their reasons; frame-level failures
(missing or extra columns, wrong dtypes, duplicate keys, nothing to read)
fail the whole file. rows_total == rows_valid + rows_quarantined, always.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
from pandera.errors import SchemaErrors

from ..errors import PipelineError
from .schema import TransactionSchema

REASONS_COLUMN = "quarantine_reasons"
# Pandera checks that judge the whole frame rather than single rows.
FRAME_CHECKS = ("column_in_schema", "column_in_dataframe", "dtype(", "field_uniqueness", "multiple_fields_uniqueness")


class DataFileError(PipelineError):
    """The file cannot be read as a table at all."""


@dataclasses.dataclass
class ValidationResult:
    passed: bool
    rows_total: int
    rows_valid: int
    rows_quarantined: int
    failures: list[dict[str, Any]]
    failures_total: int
    frame_errors: list[str]
    quarantine_share: float
    max_quarantine_share: float
    valid: pd.DataFrame = dataclasses.field(repr=False)
    quarantined: pd.DataFrame = dataclasses.field(repr=False)

    def report(self) -> dict[str, Any]:
        """The JSON contract of reports/validation.json."""
        return {
            "passed": self.passed,
            "rows_total": self.rows_total,
            "rows_valid": self.rows_valid,
            "rows_quarantined": self.rows_quarantined,
            "quarantine_share": round(self.quarantine_share, 6),
            "max_quarantine_share": self.max_quarantine_share,
            "frame_errors": self.frame_errors,
            "failures_total": self.failures_total,
            "failures": self.failures,
        }

    def summary(self) -> str:
        lines = [
            f"validation {'PASSED' if self.passed else 'FAILED'}: {self.rows_total} rows, "
            f"{self.rows_valid} valid, {self.rows_quarantined} quarantined "
            f"({self.quarantine_share:.3%}, limit {self.max_quarantine_share:.3%})"
        ]
        lines += [f"  frame error: {error}" for error in self.frame_errors]
        counts: dict[tuple[str, str], int] = {}
        for failure in self.failures:
            key = (str(failure["column"]), str(failure["check"]))
            counts[key] = counts.get(key, 0) + 1
        for (column, check), count in sorted(counts.items()):
            lines.append(f"  {column}: {check} failed on {count} listed row(s)")
        if self.failures_total > len(self.failures):
            lines.append(f"  ... {self.failures_total} failures in all, first {len(self.failures)} listed")
        return "\n".join(lines)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a parquet or CSV file, turning every way it can be unreadable into one clear error."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: the file is empty (0 bytes)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return _read_csv(path)
    except DataFileError:
        raise
    except UnicodeDecodeError as error:
        raise DataFileError(f"{path}: not valid UTF-8 text ({error.reason} at byte {error.start})") from error
    except Exception as error:  # pyarrow and the CSV parser raise many types for a corrupt file
        raise DataFileError(f"{path}: cannot be read as {suffix[1:]} ({type(error).__name__}: {error})") from error
    raise DataFileError(f"{path}: unsupported format {suffix!r}; use .parquet or .csv")


def _read_csv(path: Path) -> pd.DataFrame:
    """CSV carries no types: parse each column to the schema's dtype.

    A value that does not parse becomes a row failure (kept in `attrs["parse_failures"]`
    with the text that arrived); a column where nothing parses is a wrong dtype.
    """
    text = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8", encoding_errors="strict")
    dtypes = {name: str(column.dtype) for name, column in TransactionSchema.to_schema().columns.items()}
    frame = pd.DataFrame(index=text.index)
    failures: list[pd.DataFrame] = []
    for name in text.columns:
        raw = text[name]
        dtype = dtypes.get(name, "str")
        if dtype.startswith("datetime"):
            parsed = pd.to_datetime(raw, errors="coerce", format="ISO8601").astype("datetime64[ns]")
        elif dtype in ("int64", "float64"):
            parsed = pd.to_numeric(raw, errors="coerce")
            if dtype == "int64":
                parsed = parsed.where(parsed % 1 == 0)
        elif dtype == "bool":
            parsed = raw.str.strip().str.lower().map({"true": True, "false": False, "1": True, "0": False})
        else:
            frame[name] = raw.replace("", None).astype("str")
            continue
        unparsed = parsed.isna() & (raw.str.strip() != "")
        if len(raw) and unparsed.all():
            frame[name] = raw  # nothing parses: let the dtype check fail the frame
            continue
        failures.append(
            pd.DataFrame(
                {
                    "column": name,
                    "check": f"parses_as_{dtype}",
                    "index": raw.index[unparsed],
                    "failure_case": raw[unparsed].to_numpy(),
                }
            )
        )
        if dtype == "int64":
            parsed = parsed.fillna(0).astype("int64")
        elif dtype == "bool":
            parsed = parsed.fillna(False).astype("bool")
        # Empty cells stay null (NaN/NaT) and fail the schema's not-null check.
        frame[name] = parsed
    # Plain records, not a frame: pandas compares attrs when frames are combined.
    frame.attrs["parse_failures"] = pd.concat(failures, ignore_index=True).to_dict("records") if failures else []
    return frame


def validate_frame(
    frame: pd.DataFrame, max_quarantine_share: float, max_failures_listed: int = 100
) -> ValidationResult:
    """Split `frame` into valid and quarantined rows and list every failure."""
    schema = TransactionSchema.to_schema()
    frame = frame.reset_index(drop=True)
    frame_errors: list[str] = []
    if frame.empty:
        frame_errors.append("no data rows (empty file or header only)")
    failure_cases = pd.DataFrame(columns=["column", "check", "index", "failure_case"])
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as errors:
        failure_cases = errors.failure_cases
    parse_failures = frame.attrs.pop("parse_failures", [])
    if parse_failures:
        failure_cases = pd.concat([pd.DataFrame(parse_failures), failure_cases], ignore_index=True)
    failure_cases = failure_cases.astype({"index": "object"})
    is_frame_level = failure_cases["index"].isna() | failure_cases["check"].astype(str).str.startswith(FRAME_CHECKS)
    for row in failure_cases[is_frame_level].itertuples():
        frame_errors.append(_describe_frame_failure(str(row.column), str(row.check), row.failure_case, row.index))
    frame_errors = list(dict.fromkeys(frame_errors))  # one line per distinct problem, in order
    row_failures = failure_cases[~is_frame_level]
    bad_rows = sorted({int(i) for i in row_failures["index"]})
    reasons = _reasons_by_row(row_failures)

    quarantined = frame.loc[bad_rows].copy()
    quarantined[REASONS_COLUMN] = [reasons[i] for i in bad_rows]
    valid = frame.drop(index=bad_rows)
    rows_total = len(frame)
    share = len(bad_rows) / rows_total if rows_total else 1.0
    failures = [
        {
            "column": str(row.column),
            "check": str(row.check),
            "row": None if pd.isna(row.index) else int(row.index),
            "value": _jsonable(row.failure_case),
        }
        for row in failure_cases.head(max_failures_listed).itertuples()
    ]
    passed = not frame_errors and share <= max_quarantine_share
    if not frame_errors and share > max_quarantine_share:
        frame_errors_note = f"quarantined share {share:.3%} exceeds the limit {max_quarantine_share:.3%}"
    else:
        frame_errors_note = ""
    return ValidationResult(
        passed=passed,
        rows_total=rows_total,
        rows_valid=len(valid),
        rows_quarantined=len(bad_rows),
        failures=failures,
        failures_total=len(failure_cases),
        frame_errors=frame_errors + ([frame_errors_note] if frame_errors_note else []),
        quarantine_share=share,
        max_quarantine_share=max_quarantine_share,
        valid=valid,
        quarantined=quarantined,
    )


def _describe_frame_failure(column: str, check: str, value: Any, index: Any) -> str:
    if check == "column_in_schema":
        return f"unexpected column {value!r} (not in the schema)"
    if check == "column_in_dataframe":
        return f"missing column {value!r}"
    if check.startswith("dtype("):
        return f"column {column!r} has dtype {value!r}, expected {check[6:-1]}"
    if check == "field_uniqueness":
        return f"duplicate key values in {column!r} (e.g. {value!r})"
    return f"{column}: {check} failed ({value!r})"


def _reasons_by_row(row_failures: pd.DataFrame) -> dict[int, str]:
    reasons: dict[int, list[str]] = {}
    for row in row_failures.itertuples():
        reasons.setdefault(int(row.index), []).append(f"{row.column}: {row.check} (got {row.failure_case!r})")
    return {index: "; ".join(items) for index, items in reasons.items()}


def _jsonable(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_outputs(result: ValidationResult, valid_path: Path, quarantine_path: Path, report_path: Path) -> None:
    for path in (valid_path, quarantine_path, report_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    result.valid.to_parquet(valid_path, index=False)
    # Quarantine is for people: every value as the text it arrived as, next to the reasons.
    result.quarantined.astype(str).to_parquet(quarantine_path, index=False)
    report_path.write_text(json.dumps(result.report(), indent=2) + "\n", encoding="utf-8")
