"""Validate a raw data file against the schema without losing or inventing a row.

Every failing check is listed (column, check, row, value); rows that fail a
row-level check go to quarantine with their reasons; frame-level failures
(missing or extra columns, wrong dtypes, duplicate keys, nothing to read)
fail the whole file. rows_total == rows_valid + rows_quarantined, always.

The Pandera schema is the contract. Its checks are evaluated here as polars
expressions built from the schema object itself (each column's dtype,
nullability, uniqueness and its checks' statistics), because Pandera's own
failure-case bookkeeping costs more than the checks; a check this module has
no expression for is run by Pandera on that column. Tests hold both to the
same verdicts on the same frames.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import polars as pl

from ..errors import PipelineError
from ..files import staged as _staged
from ..lineage import file_md5
from .schema import TransactionSchema, as_utc, transaction_schema

REASONS_COLUMN = "quarantine_reasons"
# Pandera's dtype names -> the polars dtype a column must already have (no coercion: a wrong dtype fails the file).
POLARS_DTYPES: dict[str, pl.DataType] = {
    "int64": pl.Int64(),
    "int32": pl.Int32(),
    "float64": pl.Float64(),
    "float32": pl.Float32(),
    "bool": pl.Boolean(),
    "str": pl.String(),
    "string": pl.String(),
    "string[pyarrow]": pl.String(),
    "string[python]": pl.String(),
    "datetime64[ns]": pl.Datetime("ns"),
}
# Pandera's built-in checks as polars expressions over their statistics: a translation of the
# vocabulary, not a copy of the rules (the bounds and sets always come from the schema object).
BUILTIN_CHECKS: dict[str, Callable[[pl.Expr, dict[str, Any]], pl.Expr]] = {
    "equal_to": lambda c, s: c == s["value"],
    "not_equal_to": lambda c, s: c != s["value"],
    "greater_than": lambda c, s: c > s["min_value"],
    "greater_than_or_equal_to": lambda c, s: c >= s["min_value"],
    "less_than": lambda c, s: c < s["max_value"],
    "less_than_or_equal_to": lambda c, s: c <= s["max_value"],
    "in_range": lambda c, s: (
        (c >= s["min_value"] if s.get("include_min", True) else c > s["min_value"])
        & (c <= s["max_value"] if s.get("include_max", True) else c < s["max_value"])
    ),
    "isin": lambda c, s: _is_in(c, s["allowed_values"]),
    "notin": lambda c, s: ~_is_in(c, s["forbidden_values"]),
    "str_length": lambda c, s: pl.all_horizontal(
        _length(c, s["min_value"]) >= s["min_value"] if s.get("min_value") is not None else pl.lit(True),
        c.str.len_chars() <= s["max_value"] if s.get("max_value") is not None else pl.lit(True),
        c.str.len_chars() == s["exact_value"] if s.get("exact_value") is not None else pl.lit(True),
    ),
    "str_startswith": lambda c, s: c.str.starts_with(s["string"]),
    "str_endswith": lambda c, s: c.str.ends_with(s["string"]),
}


def _is_in(c: pl.Expr, values: Any) -> pl.Expr:
    """Membership; a few equality tests beat a hash lookup for the small sets schemas hold."""
    values = list(values)
    return pl.any_horizontal(*(c == v for v in values)) if 0 < len(values) <= 16 else c.is_in(values)


def _length(c: pl.Expr, at_least: int) -> pl.Expr:
    """Characters, or bytes where that gives the same verdict (a string has >= 1 char iff >= 1 byte)."""
    return c.str.len_bytes() if at_least <= 1 else c.str.len_chars()


class DataFileError(PipelineError):
    """The file cannot be read as a table at all."""


class ValidationNotPassedError(PipelineError):
    """The data a stage is about to read was not validated, or not this very file."""


@dataclasses.dataclass(frozen=True)
class RawTable:
    """A raw file as read for validation: typed columns, and (CSV) every cell as the text that arrived.

    `parse_failures` lists the cells whose text does not parse as the schema's dtype
    (columns column, check, row, value); those cells are null in `frame`.
    """

    frame: pl.DataFrame
    text: pl.DataFrame | None = None
    parse_failures: pl.DataFrame | None = None


@dataclasses.dataclass
class ValidationResult:
    """The verdict on one file: counts, every failure (listed up to a limit), the split rows."""

    passed: bool
    rows_total: int
    rows_valid: int
    rows_quarantined: int
    failures: list[dict[str, Any]]
    failures_total: int
    frame_errors: list[str]
    quarantine_share: float
    max_quarantine_share: float
    as_of: str
    valid: pl.DataFrame = dataclasses.field(repr=False)
    quarantined: pl.DataFrame = dataclasses.field(repr=False)

    def report(self) -> dict[str, Any]:
        """The JSON contract of reports/validation.json (the stage adds the written file's md5)."""
        return {
            "passed": self.passed,
            "rows_total": self.rows_total,
            "rows_valid": self.rows_valid,
            "rows_quarantined": self.rows_quarantined,
            "quarantine_share": round(self.quarantine_share, 6),
            "max_quarantine_share": self.max_quarantine_share,
            "as_of": self.as_of,
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


# ---------------------------------------------------------------- reading
BOOLEAN_TEXT = {"true": True, "false": False, "1": True, "0": False}
DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d")  # ISO 8601, naive (UTC)
FAILURE_COLUMNS = {"column": pl.String(), "check": pl.String(), "row": pl.UInt32(), "value": pl.String()}


def read_raw(path: str | Path) -> RawTable:
    """Read a parquet or CSV file, turning every way it can be unreadable into one clear error."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: the file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise DataFileError(f"{path}: unsupported format {suffix!r}; use .parquet or .csv")
    try:
        if suffix == ".parquet":
            return RawTable(pl.read_parquet(path))
        return _parse_csv(pl.read_csv(path, infer_schema=False, encoding="utf8"))
    except Exception as error:  # the parquet and CSV readers raise many types for a corrupt file
        if "utf-8" in str(error).lower():
            raise DataFileError(f"{path}: not valid UTF-8 text ({error})") from error
        raise DataFileError(f"{path}: cannot be read as {suffix[1:]} ({type(error).__name__}: {error})") from error


def read_table(path: str | Path) -> pd.DataFrame:
    """The file as a pandas frame, for code that validates with Pandera itself (the golden set)."""
    return read_raw(path).frame.to_pandas()


def _parse_csv(text: pl.DataFrame) -> RawTable:
    """CSV carries no types: parse each column to the schema's dtype, never filling a value in.

    An empty cell is missing (null) and judged by the schema. Text that does not parse is
    null in the typed frame and listed as a `parses_as_<dtype>` failure with the text; a
    column where nothing parses keeps its text, so the file fails on the column's dtype.
    """
    columns = TransactionSchema.to_schema().columns
    typed: list[pl.Series] = []
    failures: list[pl.DataFrame] = []
    for name in text.columns:
        parse = _parser(POLARS_DTYPES.get(str(columns[name].dtype))) if name in columns else None
        if parse is None:
            continue
        parsed = text.select(parse(pl.col(name)).alias(name)).to_series()
        unparsed = parsed.is_null() & text[name].is_not_null()
        if len(unparsed) and unparsed.all():
            continue
        rows = unparsed.arg_true()
        failures.append(_failures(name, f"parses_as_{columns[name].dtype}", rows, text[name].gather(rows)))
        typed.append(parsed)
    return RawTable(text.with_columns(typed), text=text, parse_failures=_concat(failures))


def _parser(dtype: pl.DataType | None) -> Callable[[pl.Expr], pl.Expr] | None:
    """Text -> `dtype`, null where the text does not parse (None: the column stays text)."""
    if dtype is None or dtype == pl.String():
        return None
    if dtype.is_integer():
        # "3" and "3.0" are the integer 3; "3.5" is not an integer.
        def integer(c: pl.Expr) -> pl.Expr:
            number = c.str.strip_chars().cast(pl.Float64, strict=False)
            whole = pl.when(number == number.floor()).then(number).cast(dtype, strict=False)
            return pl.coalesce(c.str.strip_chars().cast(dtype, strict=False), whole)

        return integer
    if dtype.is_float():
        return lambda c: c.str.strip_chars().cast(dtype, strict=False)
    if dtype == pl.Boolean():
        return lambda c: (
            c.str.strip_chars().str.to_lowercase().replace_strict(BOOLEAN_TEXT, default=None, return_dtype=pl.Boolean)
        )
    if isinstance(dtype, pl.Datetime):
        return lambda c: pl.coalesce(
            *(c.str.strip_chars().str.strptime(dtype, pattern, strict=False) for pattern in DATETIME_FORMATS)
        )
    return None


# ---------------------------------------------------------------- checking
@dataclasses.dataclass(frozen=True)
class _Rule:
    """One row-level rule of the schema: `fails` is True where a row breaks it (None: ask Pandera)."""

    column: str
    check: str
    fails: pl.Expr | None
    pandera_check: pa.Check | None = None


def schema_failures(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(row-level failures, frame-level failures, frame errors as sentences) of `frame` against `schema`.

    Failure tables have the columns column, check (named as Pandera names it), row and value
    (as text). A row-level failure quarantines its row; a frame-level one fails the file.
    """
    frame_level, errors, usable = _frame_failures(frame, schema)
    rules = _rules(schema, usable)
    flags = frame.select([rule.fails.alias(str(i)) for i, rule in enumerate(rules) if rule.fails is not None])
    counts = flags.sum().row(0, named=True) if flags.width else {}
    parts = []
    for i, rule in enumerate(rules):
        if rule.pandera_check is not None:
            fails = _pandera_fails(frame[rule.column], rule.pandera_check)
        elif counts[str(i)]:
            fails = flags[str(i)]
        else:
            continue
        rows = fails.arg_true()
        parts.append(_failures(rule.column, rule.check, rows, frame[rule.column].gather(rows)))
    return _concat(parts), frame_level, errors


def _rules(schema: pa.DataFrameSchema, usable: list[str]) -> list[_Rule]:
    """The schema's row-level rules for the columns that are present with the right dtype."""
    rules = []
    for name in usable:
        column = schema.columns[name]
        value = pl.col(name)
        if POLARS_DTYPES[str(column.dtype)].is_float():
            value = value.fill_nan(None)  # Pandera (on pandas) counts NaN as missing
        if not column.nullable:
            rules.append(_Rule(name, "not_nullable", value.is_null()))
        for check in column.checks:
            label = check.error or check.name  # what Pandera writes in its failure cases
            build = BUILTIN_CHECKS.get(check.name)
            if build is None or check.groupby is not None:
                rules.append(_Rule(name, label, None, check))
                continue
            # Pandera leaves missing values to the nullable rule unless a check says otherwise.
            rules.append(_Rule(name, label, (~build(value, check.statistics)).fill_null(not check.ignore_na)))
    return rules


def _pandera_fails(series: pl.Series, check: pa.Check) -> pl.Series:
    """A check with no polars expression, run by Pandera on this one column."""
    values = series.to_pandas()
    passed = check(values).check_output
    if not isinstance(passed, pd.Series):
        raise TypeError(f"check {check.name!r} on {series.name!r} does not give one verdict per row")
    passed = passed.reindex(values.index, fill_value=True)  # the missing values it ignored are left out
    return pl.Series(series.name, ~passed.to_numpy(dtype=bool))


def _frame_failures(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> tuple[pl.DataFrame, list[str], list[str]]:
    """Failures that sink the whole file, their sentences, and the columns whose row rules can run."""
    if schema.checks or schema.unique:
        raise TypeError("schema-wide checks and keys have no fast path here: add them to this module")
    parts, errors, usable = [], [], []
    if frame.height == 0:
        errors.append("no data rows (empty file or header only)")
    for name in frame.columns:
        if schema.strict and name not in schema.columns:
            parts.append(_frame_failure(name, "column_in_schema", name))
            errors.append(f"unexpected column {name!r} (not in the schema)")
    for name, column in schema.columns.items():
        expected = POLARS_DTYPES.get(str(column.dtype))
        if expected is None:
            raise TypeError(f"{name}: no polars dtype for {column.dtype}: add it to POLARS_DTYPES")
        if name not in frame.columns and not column.required:
            continue
        if name not in frame.columns:
            parts.append(_frame_failure(name, "column_in_dataframe", name))
            errors.append(f"missing column {name!r}")
        elif frame.schema[name] != expected:
            parts.append(_frame_failure(name, f"dtype('{column.dtype}')", str(frame.schema[name])))
            errors.append(f"column {name!r} has dtype {str(frame.schema[name])!r}, expected {column.dtype}")
        else:
            usable.append(name)
            if column.unique and _has_duplicates(frame[name]):
                rows = frame[name].is_duplicated().arg_true()
                parts.append(_failures(name, "field_uniqueness", rows, frame[name].gather(rows)))
                errors.append(f"duplicate key values in {name!r} (e.g. {frame[name][rows[0]]!r})")
    return _concat(parts), errors, usable


def _has_duplicates(series: pl.Series) -> bool:
    """Whether a value repeats; keys often arrive sorted, and then neighbours tell in one pass."""
    if series.is_sorted():
        return bool((series == series.shift(1)).any()) or series.null_count() > 1
    return series.n_unique() < len(series)


def _failures(column: str, check: str, rows: pl.Series, values: pl.Series) -> pl.DataFrame:
    return pl.DataFrame({"row": rows.cast(pl.UInt32), "value": values.cast(pl.String)}).select(
        pl.lit(column).alias("column"), pl.lit(check).alias("check"), "row", "value"
    )


def _frame_failure(column: str, check: str, value: str) -> pl.DataFrame:
    return pl.DataFrame([{"column": column, "check": check, "row": None, "value": value}], schema=FAILURE_COLUMNS)


def _concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(parts) if parts else pl.DataFrame(schema=FAILURE_COLUMNS)


# ---------------------------------------------------------------- the verdict
def validate_frame(
    table: RawTable | pl.DataFrame | pd.DataFrame,
    *,
    as_of: str | pd.Timestamp,
    max_quarantine_share: float,
    max_failures_listed: int = 100,
) -> ValidationResult:
    """Split `table` into valid and quarantined rows and list every failure.

    `as_of` (UTC) is when the data was extracted: the future-time check compares with it,
    never with the clock, so a rerun on the same file and config gives the same verdict.
    """
    raw = _as_raw_table(table)
    frame = raw.frame
    row_level, frame_level, frame_errors = schema_failures(frame, transaction_schema(as_of))
    if raw.parse_failures is not None and raw.parse_failures.height:
        # A cell that did not parse is null: name the parse failure, not also the missing value.
        row_level = pl.concat(
            [raw.parse_failures, row_level.join(raw.parse_failures, on=["column", "row"], how="anti")]
        )
    bad = _rows_mask(row_level["row"], frame.height)
    rows_total, rows_quarantined = frame.height, int(bad.sum())
    share = rows_quarantined / rows_total if rows_total else 1.0
    if not frame_errors and share > max_quarantine_share:
        frame_errors.append(f"quarantined share {share:.3%} exceeds the limit {max_quarantine_share:.3%}")
    failures = pl.concat([frame_level, row_level])
    return ValidationResult(
        passed=not frame_errors,
        rows_total=rows_total,
        rows_valid=rows_total - rows_quarantined,
        rows_quarantined=rows_quarantined,
        failures=failures.head(max_failures_listed).to_dicts(),
        failures_total=failures.height,
        frame_errors=frame_errors,
        quarantine_share=share,
        max_quarantine_share=max_quarantine_share,
        as_of=as_utc(as_of).isoformat() + "Z",
        valid=frame.filter(~bad),
        quarantined=_quarantine(raw, row_level),
    )


def _as_raw_table(table: RawTable | pl.DataFrame | pd.DataFrame) -> RawTable:
    if isinstance(table, RawTable):
        return table
    if isinstance(table, pl.DataFrame):
        return RawTable(table)
    try:
        return RawTable(pl.from_pandas(table, include_index=False))
    except Exception as error:  # mixed-type object columns have no columnar form
        raise DataFileError(f"the frame cannot be represented as typed columns: {error}") from error


def _rows_mask(rows: pl.Series, n_rows: int) -> pl.Series:
    """True at every row listed in `rows`."""
    mask = np.zeros(n_rows, dtype=bool)
    mask[rows.to_numpy()] = True
    return pl.Series("bad", mask)


def _quarantine(raw: RawTable, row_level: pl.DataFrame) -> pl.DataFrame:
    """The bad rows as they arrived (CSV: the text of every cell), each with its reasons."""
    source = raw.text if raw.text is not None else raw.frame
    reason = pl.format("{}: {} (got {})", "column", "check", pl.col("value").fill_null("null"))
    reasons = row_level.select("row", reason.alias(REASONS_COLUMN)).sort("row", maintain_order=True)
    if reasons["row"].n_unique() < reasons.height:  # a row that broke several rules: its reasons on one line
        reasons = reasons.group_by("row", maintain_order=True).agg(pl.col(REASONS_COLUMN).str.join("; "))
    rows = source[reasons["row"]].with_columns(pl.all().cast(pl.String))  # the few bad rows, in order
    return rows.with_columns(reasons.to_series(1).alias(REASONS_COLUMN))


# ---------------------------------------------------------------- outputs, and the check that uses them
def write_outputs(
    result: ValidationResult, valid_path: Path, quarantine_path: Path, report_path: Path
) -> dict[str, Any]:
    """Write the report, and the data files only when validation passed; return the report.

    Each file is written beside its target and moved into place once all are written, so a
    reader never sees half a file and a rejected input leaves the data files as they were.
    The report records the md5 of the valid file it vouches for (the hash DVC gives it too).
    """
    report = {**result.report(), "valid_md5": None}
    with ExitStack() as stack:
        moves = []
        if result.passed:
            valid_tmp = stack.enter_context(_staged(valid_path))
            quarantine_tmp = stack.enter_context(_staged(quarantine_path))
            result.valid.write_parquet(valid_tmp, compression="snappy")  # pandas' default: quicker than zstd
            # Quarantine is for people: every value as the text it arrived as, next to the reasons.
            result.quarantined.write_parquet(quarantine_tmp, compression="snappy")
            report["valid_md5"] = file_md5(valid_tmp)
            moves += [(valid_tmp, valid_path), (quarantine_tmp, quarantine_path)]
        report_tmp = stack.enter_context(_staged(report_path))
        report_tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        for temp, path in [*moves, (report_tmp, report_path)]:
            os.replace(temp, path)
    return report


def require_validated(report_path: Path, validated_path: Path) -> None:
    """Refuse data whose validation did not pass, or that is not the very file the report vouches for."""
    if not report_path.exists():
        raise ValidationNotPassedError(f"{report_path} not found: run the validate stage first (`dvc repro validate`)")
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValidationNotPassedError(f"{report_path} cannot be read ({error}): run `dvc repro validate`") from error
    if report.get("passed") is not True:
        errors = "; ".join(report.get("frame_errors") or []) or "no reason recorded"
        raise ValidationNotPassedError(f"validation did not pass ({report_path}: {errors}): refusing to train")
    if not validated_path.exists():
        raise ValidationNotPassedError(f"{validated_path} not found: run `dvc repro validate`")
    if file_md5(validated_path) != report.get("valid_md5"):
        raise ValidationNotPassedError(
            f"{validated_path} is not the file {report_path} vouches for (md5 differs): run `dvc repro validate`"
        )
