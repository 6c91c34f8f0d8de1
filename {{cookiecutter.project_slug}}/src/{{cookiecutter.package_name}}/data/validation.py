"""Validate a raw data file against the schema without losing or inventing a row.

Every failing check is counted and listed (column, check, row, value) up to a limit; rows
that fail a row-level check go to quarantine with their reasons; frame-level failures
(missing or extra columns, wrong dtypes, duplicate keys, nothing to read) fail the whole
file. rows_total == rows_valid + rows_quarantined, always.

The Pandera schema is the contract. Its checks are evaluated as polars expressions built
from the schema object itself (each column's dtype, nullability, uniqueness and its checks'
statistics), because Pandera's own failure-case bookkeeping costs more than the checks; a
check with no expression here is run by Pandera on that column, batch by batch. Tests hold
both to the same verdicts on the same frames.

One plan of checks serves two engines: a small file is read whole and checked in memory; a
file from `stream_from_mb` up is scanned and written by polars' streaming engine in row
groups, the failing rows in a first pass and every other row in a second, so memory follows
the batch size, not the file's. Importing Pandera (and pandas under it) takes longer than checking a million
rows, so the translated checks are kept in a small cache keyed by the bytes of schema.py and
of this module, Pandera's own version and the `as_of` reference: the stage imports Pandera
only when the schema changed (or a check needs Pandera to run it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from ..errors import PipelineError
from ..files import staged as _staged
from ..lineage import file_md5

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa

REASONS_COLUMN = "quarantine_reasons"
Engine = Literal["in-memory", "streaming"]
ROW = "__row"  # the row's position in the file, carried through the plan
# Rows per row group of the validated file: the unit a streaming reader (training) loads at a time.
ROW_GROUP_SIZE = 262_144
STREAM_FROM_MB = 64.0  # files from this size up are streamed (the stage takes it from the config)
# Rows per batch of the streaming engine: what bounds its memory (its own default let 100M rows reach 6 GB).
STREAM_BATCH_ROWS = 50_000
KEY_HASHES_PER_PASS = 16_000_000  # duplicate search on unsorted keys: 8 bytes per row held, this many at a time
SCHEMA_FILE = Path(__file__).with_name("schema.py")
ROWS_FILE = Path(__file__).with_name("rows.py")  # what the engine adds to the schema (the time check)
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
    if 0 < len(values) <= 16 or any(isinstance(v, pl.Expr) for v in values):
        return pl.any_horizontal(*(c == v for v in values)) if values else pl.lit(False)
    return c.is_in(values)


def _length(c: pl.Expr, at_least: int) -> pl.Expr:
    """Characters, or bytes where that gives the same verdict (a string has >= 1 char iff >= 1 byte)."""
    return c.str.len_bytes() if at_least <= 1 else c.str.len_chars()


class DataFileError(PipelineError):
    """The file cannot be read as a table at all."""


class ValidationNotPassedError(PipelineError):
    """The data a stage is about to read was not validated, or not this very file."""


# ---------------------------------------------------------------- the schema, as plain data
@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """One check of a column: a built-in with its statistics, or (`pandera_index`) one Pandera must run."""

    name: str
    label: str  # what Pandera writes in its failure cases
    statistics: dict[str, Any]
    ignore_na: bool
    pandera_index: int | None = None


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    name: str
    dtype: str
    nullable: bool
    unique: bool
    required: bool
    checks: tuple[CheckSpec, ...]


@dataclasses.dataclass(frozen=True)
class SchemaSpec:
    """What validation needs from a Pandera schema, in a form that JSON holds and polars reads."""

    strict: bool
    columns: tuple[ColumnSpec, ...]
    as_of: str | None = None
    # The schema object itself, for the checks only Pandera can run (loaded when first needed).
    pandera_schema: Callable[[], pa.DataFrameSchema] | None = dataclasses.field(default=None, compare=False)

    def column(self, name: str) -> ColumnSpec | None:
        return next((column for column in self.columns if column.name == name), None)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data.pop("pandera_schema")
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, pandera_schema: Callable[[], pa.DataFrameSchema] | None = None) -> SchemaSpec:
        data = json.loads(text)
        columns = tuple(
            ColumnSpec(**{**column, "checks": tuple(CheckSpec(**check) for check in column["checks"])})
            for column in data.pop("columns")
        )
        return cls(**data, columns=columns, pandera_schema=pandera_schema)


def schema_spec(schema: pa.DataFrameSchema, as_of: str | None = None) -> SchemaSpec:
    """Translate a Pandera schema into the checks this module evaluates (the one translation)."""
    if schema.checks or schema.unique:
        raise TypeError("schema-wide checks and keys have no fast path here: add them to this module")
    columns = []
    for name, column in schema.columns.items():
        if str(column.dtype) not in POLARS_DTYPES:
            raise TypeError(f"{name}: no polars dtype for {column.dtype}: add it to POLARS_DTYPES")
        checks = []
        for index, check in enumerate(column.checks):
            label = check.error or check.name
            statistics = _encode(check.statistics) if check.name in BUILTIN_CHECKS and check.groupby is None else None
            if statistics is None:  # no expression for it here: Pandera runs it
                checks.append(CheckSpec(check.name, label, {}, bool(check.ignore_na), pandera_index=index))
            else:
                checks.append(CheckSpec(check.name, label, statistics, bool(check.ignore_na)))
        columns.append(
            ColumnSpec(name, str(column.dtype), column.nullable, column.unique, column.required, tuple(checks))
        )
    return SchemaSpec(bool(schema.strict), tuple(columns), as_of, pandera_schema=lambda: schema)


def _encode(value: Any) -> Any:
    """A check statistic as JSON (times as {"datetime_ns": n}); None where it has no such form."""
    if isinstance(value, dict):
        items = {key: _encode(item) for key, item in value.items()}
        return None if any(item is None and value[key] is not None for key, item in items.items()) else items
    if isinstance(value, (list, tuple, set, frozenset)):
        items_list = [_encode(item) for item in value]
        return None if any(item is None for item in items_list) else items_list
    if isinstance(value, dt.datetime):  # pandas' Timestamp too; naive means UTC, as event times do
        if value.tzinfo is not None:
            return None
        nanoseconds = getattr(value, "value", None)  # a Timestamp keeps its nanoseconds
        if not isinstance(nanoseconds, int):
            nanoseconds = (value - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1) * 1000
        return {"datetime_ns": nanoseconds}
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):  # numpy scalars
        value = value.item()
    return value if value is None or isinstance(value, (bool, int, float, str)) else None


def _polars_time(nanoseconds: int) -> pl.Expr:
    return pl.lit(nanoseconds, dtype=pl.Int64).cast(pl.Datetime("ns"))


def decode_statistic(value: Any, time: Callable[[int], Any] = _polars_time) -> Any:
    """A check statistic back from its JSON form; `time` makes an engine's value of a time's nanoseconds."""
    if isinstance(value, dict):
        if set(value) == {"datetime_ns"}:
            return time(value["datetime_ns"])
        return {key: decode_statistic(item, time) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_statistic(item, time) for item in value]
    return value


def row_checks(as_of: str | pd.Timestamp, cache: bool = True) -> SchemaSpec:
    """The transaction schema's checks with the future-time check pinned to `as_of`, from the cache if fresh."""
    return _row_checks(str(as_of), cache)


@functools.lru_cache(maxsize=16)
def _row_checks(as_of: str, cache: bool) -> SchemaSpec:
    def schema() -> pa.DataFrameSchema:
        from .rows import row_schema

        return row_schema(as_of)

    path = _cache_path(as_of) if cache else None
    if path is not None and path.exists():
        try:
            return SchemaSpec.from_json(path.read_text(encoding="utf-8"), pandera_schema=schema)
        except (OSError, ValueError, TypeError):
            pass  # unreadable or from another layout: translate again
    from .rows import as_utc

    spec = schema_spec(schema(), as_of=as_utc(as_of).isoformat() + "Z")
    spec = dataclasses.replace(spec, pandera_schema=schema)
    if path is not None:
        with suppress(OSError):  # a cache that cannot be written (read-only install) is only slower
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temp.write_text(spec.to_json(), encoding="utf-8")
            os.replace(temp, path)
    return spec


def _cache_path(as_of: str) -> Path | None:
    """Where the translated checks of this schema, this module, this Pandera and `as_of` are kept.

    Beside the bytecode Python caches for these modules (`__pycache__`, never committed). A schema
    that takes its rules from another module must add that module's bytes to the key here.
    """
    pandera = importlib.util.find_spec("pandera")
    if pandera is None or pandera.origin is None:
        return None
    digest = hashlib.md5()
    for part in (SCHEMA_FILE, ROWS_FILE, Path(__file__), Path(pandera.origin).with_name("_version.py")):
        try:
            digest.update(part.read_bytes())
        except OSError:
            return None
    digest.update(as_of.encode())
    return SCHEMA_FILE.parent / "__pycache__" / f"schema-checks-{digest.hexdigest()}.json"


# ---------------------------------------------------------------- reading
BOOLEAN_TEXT = {"true": True, "false": False, "1": True, "0": False}
DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d")  # ISO 8601, naive (UTC)
FAILURE_COLUMNS = {"column": pl.String(), "check": pl.String(), "row": pl.UInt32(), "value": pl.String()}


@dataclasses.dataclass(frozen=True)
class RawTable:
    """A raw file as read for validation: typed columns, and (CSV) every cell as the text that arrived."""

    frame: pl.DataFrame
    text: pl.DataFrame | None = None


def _check_path(path: Path) -> str:
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: the file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise DataFileError(f"{path}: unsupported format {suffix!r}; use .parquet or .csv")
    return suffix


def _identity(path: Path) -> tuple[int, int, int]:
    """What tells a file replaced or rewritten: inode, size, modification time."""
    status = path.stat()
    return status.st_ino, status.st_size, status.st_mtime_ns


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn every way a file can be unreadable into one clear error."""
    try:
        yield
    except Exception as error:  # the parquet and CSV readers raise many types for a corrupt file
        if "utf-8" in str(error).lower() or "utf8" in str(error).lower():
            raise DataFileError(f"{path}: not valid UTF-8 text ({error})") from error
        kind = path.suffix.lower()[1:]
        raise DataFileError(f"{path}: cannot be read as {kind} ({type(error).__name__}: {error})") from error


def read_raw(path: str | Path, spec: SchemaSpec | None = None) -> RawTable:
    """Read a parquet or CSV file whole, turning every way it can be unreadable into one clear error."""
    path = Path(path)
    suffix = _check_path(path)
    with _reading(path):
        if suffix == ".parquet":
            return RawTable(pl.read_parquet(path))
        text = pl.read_csv(path, infer_schema=False, encoding="utf8")
    parsers = _parsers(text.lazy(), spec or row_checks(_ANY_AS_OF))
    return RawTable(text.with_columns(parse(pl.col(name)).alias(name) for name, parse in parsers.items()), text)


_ANY_AS_OF = "1970-01-01"  # parsing needs only the columns' dtypes, which no reference time changes


def read_table(path: str | Path) -> pd.DataFrame:
    """The file as a pandas frame, for code that validates with Pandera itself (the golden set)."""
    return read_raw(path).frame.to_pandas()


def _parsers(text: pl.LazyFrame, spec: SchemaSpec) -> dict[str, Callable[[pl.Expr], pl.Expr]]:
    """CSV carries no types: each column's parser to the schema's dtype, never filling a value in.

    An empty cell is missing (null) and judged by the schema. Text that does not parse is null
    in the typed column and listed as a `parses_as_<dtype>` failure with the text; a column
    where nothing parses keeps its text, so the file fails on the column's dtype.
    """
    parsers = {}
    for name in text.collect_schema().names():
        column = spec.column(name)
        parse = _parser(POLARS_DTYPES[column.dtype]) if column is not None else None
        if parse is not None:
            parsers[name] = parse
    if not parsers:
        return parsers
    unparsed = [(parse(pl.col(name)).is_null() & pl.col(name).is_not_null()) for name, parse in parsers.items()]
    nothing = text.select(
        pl.len() > 0, *(flag.all().alias(name) for flag, name in zip(unparsed, parsers, strict=True))
    ).collect()
    return {name: parse for name, parse in parsers.items() if not (nothing.item(0, 0) and nothing[name][0])}


def _parser(dtype: pl.DataType) -> Callable[[pl.Expr], pl.Expr] | None:
    """Text -> `dtype`, null where the text does not parse (None: the column stays text)."""
    if dtype == pl.String():
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
    """One row-level rule: `fails` is True where a row breaks it; `value` is what the listing shows."""

    column: str
    check: str
    fails: pl.Expr
    value: pl.Expr


def _rules(spec: SchemaSpec, usable: list[str], parsers: dict[str, Callable[[pl.Expr], pl.Expr]]) -> list[_Rule]:
    """Every row-level rule, in the order failures are listed: the CSV parse failures, then the schema's.

    A cell that did not parse is null: its parse failure is named, not also its other rules.
    """
    parse_rules = [
        _Rule(
            name,
            f"parses_as_{spec_column.dtype}",
            parse(pl.col(name)).is_null() & pl.col(name).is_not_null(),
            pl.col(name),
        )
        for name, parse in parsers.items()
        if (spec_column := spec.column(name)) is not None
    ]
    unparsed = {rule.column: rule.fails for rule in parse_rules}
    rules = []
    for name in usable:
        column = spec.column(name)
        assert column is not None
        value = shown = _typed(name, parsers)
        if POLARS_DTYPES[column.dtype].is_float():
            value = value.fill_nan(None)  # Pandera (on pandas) counts NaN as missing
        if not column.nullable:
            rules.append(_Rule(name, "not_nullable", value.is_null(), shown.cast(pl.String)))
        for check in column.checks:
            if check.pandera_index is None:
                passes = BUILTIN_CHECKS[check.name](value, decode_statistic(check.statistics))
            else:
                passes = value.map_batches(
                    functools.partial(_pandera_passes, check=_pandera_check(spec, name, check.pandera_index)),
                    return_dtype=pl.Boolean,
                    is_elementwise=True,
                )
            # Pandera leaves missing values to the nullable rule unless a check says otherwise.
            rules.append(_Rule(name, check.label, (~passes).fill_null(not check.ignore_na), shown.cast(pl.String)))
    if unparsed:
        rules = [
            dataclasses.replace(rule, fails=rule.fails & ~unparsed[rule.column]) if rule.column in unparsed else rule
            for rule in rules
        ]
    return parse_rules + rules


def _flag(i: int) -> pl.Expr:
    return pl.col(f"__fails{i}")


def _typed(name: str, parsers: dict[str, Callable[[pl.Expr], pl.Expr]]) -> pl.Expr:
    """The column as its schema dtype (CSV: parsed from its text)."""
    return parsers[name](pl.col(name)) if name in parsers else pl.col(name)


def _pandera_check(spec: SchemaSpec, column: str, index: int) -> pa.Check:
    if spec.pandera_schema is None:
        raise TypeError(f"{column}: check {index} needs Pandera, and this spec has no schema object")
    return spec.pandera_schema().columns[column].checks[index]


def _pandera_passes(series: pl.Series, check: pa.Check) -> pl.Series:
    """A check with no polars expression, run by Pandera on a batch of this one column."""
    import pandas as pd

    values = series.to_pandas()
    passed = check(values).check_output
    if not isinstance(passed, pd.Series):
        raise TypeError(f"check {check.name!r} on {series.name!r} does not give one verdict per row")
    passed = passed.reindex(values.index, fill_value=True)  # the missing values it ignored are left out
    return pl.Series(series.name, passed.to_numpy(dtype=bool))


def _frame_failures(
    columns: dict[str, pl.DataType], spec: SchemaSpec, rows: int
) -> tuple[list[pl.DataFrame], list[str], list[str]]:
    """Failures of the file's layout that sink it whole, their sentences, and the columns rules can run on."""
    parts, errors, usable = [], [], []
    if rows == 0:
        errors.append("no data rows (empty file or header only)")
    for name in columns:
        if spec.strict and spec.column(name) is None:
            parts.append(_frame_failure(name, "column_in_schema", name))
            errors.append(f"unexpected column {name!r} (not in the schema)")
    for column in spec.columns:
        name, expected = column.name, POLARS_DTYPES[column.dtype]
        if name not in columns and not column.required:
            continue
        if name not in columns:
            parts.append(_frame_failure(name, "column_in_dataframe", name))
            errors.append(f"missing column {name!r}")
        elif columns[name] != expected:
            parts.append(_frame_failure(name, f"dtype('{column.dtype}')", str(columns[name])))
            errors.append(f"column {name!r} has dtype {str(columns[name])!r}, expected {column.dtype}")
        else:
            usable.append(name)
    return parts, errors, usable


def _duplicates(
    source: pl.LazyFrame, name: str, limit: int, engine: Engine, increasing: bool | None = None
) -> tuple[int, pl.DataFrame]:
    """How many rows share a key value with another row, and the first `limit` of them (row, value).

    Keys often arrive sorted, and then neighbours tell in one pass that holds nothing (`increasing`:
    that pass already made, in memory beside the rules, see `_strictly_increasing_expr`). Otherwise
    the keys' 64-bit hashes are sorted `KEY_HASHES_PER_PASS` at a time (a slice of the hash range
    per pass), and only rows whose hash repeats are compared by value.
    """
    key = pl.col(name)
    if increasing if increasing is not None else _strictly_increasing(source.select(key)):
        return 0, pl.DataFrame(schema={"row": pl.UInt32(), "value": pl.String()})
    rows = source.select(pl.len()).collect(engine=engine).item()
    passes = max(1, -(-rows // KEY_HASHES_PER_PASS))
    hashed = source.select(key.hash(seed=0).alias("hash"))
    repeated: list[pl.Series] = []
    for part in range(passes):
        hashes = hashed.filter(pl.col("hash") % passes == part).collect(engine=engine)["hash"].sort()
        repeated.append(hashes.filter(hashes == hashes.shift(1)).unique())
    suspects = pl.concat(repeated)
    if suspects.is_empty():
        return 0, pl.DataFrame(schema={"row": pl.UInt32(), "value": pl.String()})
    candidates = (
        source.with_row_index(ROW)
        .filter(key.hash(seed=0).is_in(suspects.implode()))
        .select(ROW, key)
        .collect(engine=engine)
    )
    found = candidates.filter(candidates[name].is_duplicated())
    return found.height, found.head(limit).select(
        pl.col(ROW).cast(pl.UInt32).alias("row"), pl.col(name).cast(pl.String).alias("value")
    )


def _strictly_increasing_expr(name: str) -> pl.Expr:
    """Whether every value of the column is greater than the one before (and none is null), as one expression:
    over a table in memory it runs beside the rules; `_strictly_increasing` runs it batch by batch."""
    key = pl.col(name)
    return ((key > key.shift(1)).all() & (key.null_count() == 0)).alias(name)


def _strictly_increasing(keys: pl.LazyFrame) -> bool:
    """`_strictly_increasing_expr` over a stream: within each batch, and across each batch's first value."""
    last = None
    for batch in keys.collect_batches():
        if batch.height == 0:
            continue
        column = batch.to_series()
        if not batch.select(_strictly_increasing_expr(column.name)).item():
            return False
        if last is not None and not column[0] > last:
            return False
        last = column[-1]
    return True


def _frame_failure(column: str, check: str, value: str) -> pl.DataFrame:
    return pl.DataFrame([{"column": column, "check": check, "row": None, "value": value}], schema=FAILURE_COLUMNS)


def _concat(parts: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(parts) if parts else pl.DataFrame(schema=FAILURE_COLUMNS)


# ---------------------------------------------------------------- the plan: every rule's flag, valid and bad rows apart
BAD = "__bad"  # in memory: whether any rule fails on the row, read from the flag columns


@dataclasses.dataclass
class _Plan:
    """The checks laid over a source: every rule's flag per row, and how valid and bad rows are shown."""

    source: pl.LazyFrame  # every row as it was read
    rows: int  # how many
    typed: pl.LazyFrame  # every row, the columns as the schema types them
    flagged: pl.LazyFrame  # the source's columns, ROW, one flag per rule
    rules: list[_Rule]
    columns: list[str]
    frame_level: list[pl.DataFrame]
    frame_errors: list[str]
    unique: list[str]
    parsers: dict[str, Callable[[pl.Expr], pl.Expr]]

    @property
    def flag_names(self) -> list[str]:
        return [f"__fails{i}" for i in range(len(self.rules))]

    def any_bad(self) -> pl.Expr:
        """Whether any rule fails on the row, read from the flag columns (no rule is evaluated twice)."""
        return pl.any_horizontal(_flag(i) for i in range(len(self.rules))) if self.rules else pl.lit(False)

    def valid_columns(self) -> list[pl.Expr]:
        """A valid row as the schema types it (CSV: parsed from its text)."""
        return [_typed(name, self.parsers).alias(name) for name in self.columns]

    def bad_columns(self) -> list[pl.Expr]:
        """A bad row for people: the cells as they arrived, the reasons, ROW, each rule's flag and value."""
        reason = [
            pl.when(_flag(i)).then(
                pl.concat_str(pl.lit(f"{rule.column}: {rule.check} (got "), rule.value.fill_null("null"), pl.lit(")"))
            )
            for i, rule in enumerate(self.rules)
        ]
        return [
            *(pl.col(name).cast(pl.String) for name in self.columns),  # the cells as they arrived (CSV: the text)
            (pl.concat_str(reason, separator="; ", ignore_nulls=True) if reason else pl.lit(None, pl.String)).alias(
                REASONS_COLUMN
            ),
            pl.col(ROW),
            *(_flag(i) for i in range(len(self.rules))),
            *(rule.value.alias(f"__value{i}") for i, rule in enumerate(self.rules)),
        ]

    def bad_rows(self) -> pl.LazyFrame:
        """The rows any rule fails on, as `bad_columns` shows them."""
        return self.flagged.filter(self.any_bad()).select(self.bad_columns())

    def valid_rows_except(self, bad: pl.Series) -> pl.LazyFrame:
        """Every row but those at the positions `bad` (ROW) names, as the schema types them: no rule evaluated again."""
        return self.source.with_row_index(ROW).filter(~pl.col(ROW).is_in(bad.implode())).select(self.valid_columns())

    def split_in_memory(self, source: pl.DataFrame) -> tuple[pl.LazyFrame, pl.DataFrame, dict[str, bool]]:
        """(valid rows, bad rows, whether each unique key strictly increases) of a table in memory.

        Every rule is evaluated once, over the whole table, in one parallel select (and the key
        order beside it). The valid rows stay a selection of the source by the flags (the table
        itself when nothing failed): copying them out is left to whoever needs them as a table.
        Reasons are built for the few bad rows alone.
        """
        flags, *orders = pl.collect_all(
            [
                self.flagged.select(*self.flag_names).with_columns(self.any_bad().alias(BAD)),
                *(self.typed.select(_strictly_increasing_expr(name)) for name in self.unique),
            ]
        )
        increasing = {name: bool(order.item()) for name, order in zip(self.unique, orders, strict=True)}
        is_bad = flags[BAD]
        valid_source = source.with_columns(is_bad).lazy().filter(~pl.col(BAD)) if is_bad.any() else source.lazy()
        bad_source = pl.concat(
            [source.filter(is_bad), pl.arg_where(is_bad, eager=True).alias(ROW).to_frame(), flags.filter(is_bad)],
            how="horizontal",
        )
        valid = valid_source.select(self.valid_columns())
        return valid, bad_source.lazy().select(self.bad_columns()).collect(), increasing


def _plan(source: pl.LazyFrame, spec: SchemaSpec, is_text: bool, engine: Engine) -> _Plan:
    names = source.collect_schema().names()
    parsers = _parsers(source, spec) if is_text else {}
    typed = source.with_columns(parse(pl.col(name)).alias(name) for name, parse in parsers.items())
    rows = source.select(pl.len()).collect(engine=engine).item()  # parquet: from the metadata
    frame_level, errors, usable = _frame_failures(dict(typed.collect_schema()), spec, rows)
    rules = _rules(spec, usable, parsers)
    flagged = source.with_row_index(ROW).with_columns(rule.fails.alias(f"__fails{i}") for i, rule in enumerate(rules))
    unique = [name for name in usable if (column := spec.column(name)) is not None and column.unique]
    return _Plan(source, rows, typed, flagged, rules, names, frame_level, errors, unique, parsers)


# ---------------------------------------------------------------- the verdict
@dataclasses.dataclass
class ValidationResult:
    """The verdict on one file: counts, every failure counted and listed up to a limit, the split rows.

    `valid` and `quarantined` are the rows in memory, or None where they were streamed to files.
    The valid rows are kept as a selection of the table (`valid_rows`) and copied out only when
    `valid` is first read: the stage writes them straight from the table, never holding them twice.
    """

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
    quarantined: pl.DataFrame | None = dataclasses.field(repr=False)
    valid_rows: pl.LazyFrame | None = dataclasses.field(default=None, repr=False)
    _valid: pl.DataFrame | None = dataclasses.field(default=None, repr=False, init=False)

    @property
    def valid(self) -> pl.DataFrame | None:
        """The valid rows as a table of their own (copied out of the source once, on first use)."""
        if self._valid is None and self.valid_rows is not None:
            self._valid = self.valid_rows.collect()
        return self._valid

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


def _verdict(
    plan: _Plan,
    bad: pl.LazyFrame,
    spec: SchemaSpec,
    *,
    max_quarantine_share: float,
    max_failures_listed: int,
    engine: Engine,
    increasing: dict[str, bool] | None = None,
) -> ValidationResult:
    """Counts and the bounded listing, from the bad rows only (and the key column for duplicates)."""
    rows_total = plan.rows
    errors = list(plan.frame_errors)
    frame_level = list(plan.frame_level)
    frame_total = len(frame_level)
    for name in plan.unique:
        count, rows = _duplicates(plan.typed, name, max_failures_listed, engine, (increasing or {}).get(name))
        if count:
            frame_level.append(
                rows.select(pl.lit(name).alias("column"), pl.lit("field_uniqueness").alias("check"), "row", "value")
            )
            frame_total += count
            errors.append(f"duplicate key values in {name!r} (e.g. {rows['value'][0]!r})")
    counts = bad.select(pl.len(), *(_flag(i).sum() for i in range(len(plan.rules)))).collect(engine=engine).row(0)
    rows_quarantined, per_rule = int(counts[0]), [int(count) for count in counts[1:]]
    listed = [_concat(frame_level).head(max_failures_listed)]
    room = max_failures_listed - listed[0].height
    for i, rule in enumerate(plan.rules):
        if room <= 0:
            break
        if per_rule[i]:
            part = (
                bad.filter(_flag(i))
                .select(
                    pl.lit(rule.column).alias("column"),
                    pl.lit(rule.check).alias("check"),
                    pl.col(ROW).cast(pl.UInt32).alias("row"),
                    pl.col(f"__value{i}").cast(pl.String).alias("value"),
                )
                .head(room)
            )
            listed.append(part.collect(engine=engine))
            room -= listed[-1].height
    share = _quarantine_share(rows_quarantined, rows_total)
    if not errors and share > max_quarantine_share:
        errors.append(f"quarantined share {share:.3%} exceeds the limit {max_quarantine_share:.3%}")
    return ValidationResult(
        passed=not errors,
        rows_total=rows_total,
        rows_valid=rows_total - rows_quarantined,
        rows_quarantined=rows_quarantined,
        failures=pl.concat(listed).to_dicts(),
        failures_total=frame_total + sum(per_rule),
        frame_errors=errors,
        quarantine_share=share,
        max_quarantine_share=max_quarantine_share,
        as_of=spec.as_of or "",
        quarantined=None,
    )


def _quarantine_share(rows_quarantined: int, rows_total: int) -> float:
    return rows_quarantined / rows_total if rows_total else 1.0


def validate_frame(
    table: RawTable | pl.DataFrame | pd.DataFrame,
    *,
    as_of: str | pd.Timestamp,
    max_quarantine_share: float,
    max_failures_listed: int = 100,
) -> ValidationResult:
    """Split `table` (in memory) into valid and quarantined rows; count every failure, list up to the limit.

    `as_of` (UTC) is when the data was extracted: the future-time check compares with it,
    never with the clock, so a rerun on the same file and config gives the same verdict.
    """
    raw = _as_raw_table(table)
    spec = row_checks(as_of)
    source = raw.text if raw.text is not None else raw.frame
    plan = _plan(source.lazy(), spec, is_text=raw.text is not None, engine="in-memory")
    valid, bad, increasing = plan.split_in_memory(source)
    result = _verdict(
        plan,
        bad.lazy(),
        spec,
        max_quarantine_share=max_quarantine_share,
        max_failures_listed=max_failures_listed,
        engine="in-memory",
        increasing=increasing,
    )
    result.valid_rows = valid
    result.quarantined = bad.select(*plan.columns, REASONS_COLUMN)
    return result


def schema_failures(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(row-level failures, frame-level failures, frame errors as sentences) of `frame` against `schema`, all listed.

    Failure tables have the columns column, check (named as Pandera names it), row and value
    (as text). A row-level failure quarantines its row; a frame-level one fails the file.
    """
    spec = schema_spec(schema)
    plan = _plan(frame.lazy(), spec, is_text=False, engine="in-memory")
    result = _verdict(
        plan,
        plan.bad_rows(),
        spec,
        max_quarantine_share=1.0,
        max_failures_listed=2**32 - 1,
        engine="in-memory",
    )  # list every failure
    listed = pl.DataFrame(result.failures, schema=FAILURE_COLUMNS)
    frame_level = pl.col("row").is_null() | (pl.col("check") == "field_uniqueness")
    return listed.filter(~frame_level), listed.filter(frame_level), result.frame_errors


def _as_raw_table(table: RawTable | pl.DataFrame | pd.DataFrame) -> RawTable:
    if isinstance(table, RawTable):
        return table
    if isinstance(table, pl.DataFrame):
        return RawTable(table)
    try:
        return RawTable(pl.from_pandas(table, include_index=False))
    except Exception as error:  # mixed-type object columns have no columnar form
        raise DataFileError(f"the frame cannot be represented as typed columns: {error}") from error


# ---------------------------------------------------------------- the stage: a file in, the outputs out
def validate_file(
    raw_path: str | Path,
    valid_path: Path,
    quarantine_path: Path,
    report_path: Path,
    *,
    as_of: str,
    max_quarantine_share: float,
    max_failures_listed: int = 100,
    stream_from_mb: float = STREAM_FROM_MB,
    row_group_size: int = ROW_GROUP_SIZE,
    batch_rows: int = STREAM_BATCH_ROWS,
) -> tuple[ValidationResult, dict[str, Any]]:
    """Validate a file and write the outputs (atomically, data files only when it passed); return both.

    A file under `stream_from_mb` is read whole and checked in memory (quicker there); a larger one
    is scanned and written by the streaming engine: the bad rows in a first pass, the valid ones in a second.
    """
    raw_path = Path(raw_path)
    suffix = _check_path(raw_path)
    if raw_path.stat().st_size < stream_from_mb * 2**20:
        result = validate_frame(
            read_raw(raw_path),
            as_of=as_of,
            max_quarantine_share=max_quarantine_share,
            max_failures_listed=max_failures_listed,
        )
        return result, write_outputs(result, valid_path, quarantine_path, report_path, row_group_size=row_group_size)
    with pl.Config(streaming_chunk_size=batch_rows):
        return _validate_streamed(
            raw_path,
            suffix,
            valid_path,
            quarantine_path,
            report_path,
            as_of=as_of,
            max_quarantine_share=max_quarantine_share,
            max_failures_listed=max_failures_listed,
            row_group_size=row_group_size,
        )


def _validate_streamed(
    raw_path: Path,
    suffix: str,
    valid_path: Path,
    quarantine_path: Path,
    report_path: Path,
    *,
    as_of: str,
    max_quarantine_share: float,
    max_failures_listed: int,
    row_group_size: int,
) -> tuple[ValidationResult, dict[str, Any]]:
    spec = row_checks(as_of)
    read_as = _identity(raw_path)
    with _reading(raw_path):
        if suffix == ".parquet":
            source = pl.scan_parquet(raw_path)
        else:
            source = pl.scan_csv(raw_path, infer_schema=False, encoding="utf8")
        source.collect_schema()
        plan = _plan(source, spec, is_text=suffix == ".csv", engine="streaming")
    with ExitStack() as stack:
        valid_tmp = stack.enter_context(_staged(valid_path))
        quarantine_tmp = stack.enter_context(_staged(quarantine_path))
        bad_tmp = stack.enter_context(_staged(quarantine_path.with_name(quarantine_path.name + ".bad")))
        # Two passes with one sink each. One scan feeding two sinks made the engine hold the rows the
        # slower sink had not taken yet (peak RSS 1.1-1.6 GB at 10M-100M rows, against 0.7 GB).
        with _reading(raw_path):
            plan.bad_rows().sink_parquet(bad_tmp, compression="snappy")
        bad = pl.scan_parquet(bad_tmp)
        rows_bad = bad.select(pl.len()).collect().item()
        valid_md5 = None
        # The valid rows are copied unless the first pass already rejects the file (layout, quarantine
        # share); whether keys repeat is judged while the copy is hashed, and a file whose keys repeat
        # is rejected then, its copy thrown away. Bad rows are at most the quarantine share: their
        # positions (4 bytes each) fit in memory.
        if not plan.frame_errors and _quarantine_share(rows_bad, plan.rows) <= max_quarantine_share:
            with _reading(raw_path):
                valid = plan.valid_rows_except(bad.select(ROW).collect()[ROW])
                valid.sink_parquet(valid_tmp, compression="snappy", row_group_size=row_group_size)
            valid_md5 = stack.enter_context(_hashing(valid_tmp))
        result = _verdict(
            plan,
            bad,
            spec,
            max_quarantine_share=max_quarantine_share,
            max_failures_listed=max_failures_listed,
            engine="streaming",
        )
        data: list[tuple[Path, Path]] = []
        if result.passed:
            bad.select(*plan.columns, REASONS_COLUMN).sink_parquet(quarantine_tmp, compression="snappy")
            written = pl.scan_parquet(valid_tmp).select(pl.len()).collect().item()
            if _identity(raw_path) != read_as or written != result.rows_valid:
                raise DataFileError(f"{raw_path} changed while it was validated: run the stage again")
            data = [(valid_tmp, valid_path), (quarantine_tmp, quarantine_path)]
        return result, _publish(result, data, report_path, valid_md5)


# ---------------------------------------------------------------- outputs, and the check that uses them
def write_outputs(
    result: ValidationResult,
    valid_path: Path,
    quarantine_path: Path,
    report_path: Path,
    row_group_size: int = ROW_GROUP_SIZE,
) -> dict[str, Any]:
    """Write the report, and the data files only when validation passed; return the report.

    Each file is written beside its target and moved into place once all are written, so a
    reader never sees half a file and a rejected input leaves the data files as they were.
    The report records the md5 of the valid file it vouches for (the hash DVC gives it too).
    """
    with ExitStack() as stack:
        data: list[tuple[Path, Path]] = []
        valid_md5 = None
        if result.passed:
            if result.valid_rows is None or result.quarantined is None:
                raise ValueError("the rows of this result were streamed to files: validate_file wrote them")
            valid_tmp = stack.enter_context(_staged(valid_path))
            quarantine_tmp = stack.enter_context(_staged(quarantine_path))
            # snappy: pandas' default, quicker than zstd
            if result._valid is not None:  # already copied out: write that table
                result._valid.write_parquet(valid_tmp, compression="snappy", row_group_size=row_group_size)
            else:  # filtered on the way to the file, no second copy of the table in memory
                result.valid_rows.sink_parquet(valid_tmp, compression="snappy", row_group_size=row_group_size)
            valid_md5 = stack.enter_context(_hashing(valid_tmp))
            # Quarantine is for people: every value as the text it arrived as, next to the reasons.
            result.quarantined.write_parquet(quarantine_tmp, compression="snappy")
            data = [(valid_tmp, valid_path), (quarantine_tmp, quarantine_path)]
        return _publish(result, data, report_path, valid_md5)


@contextmanager
def _hashing(path: Path) -> Iterator[Future[str]]:
    """The md5 of a file just written, computed on another thread while the caller goes on writing.

    Hashing is one core's work and the writes after it are mostly the other's: on two cores the
    hash of the valid file costs nothing the stage waits for.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(file_md5, path)


def _publish(
    result: ValidationResult, data: list[tuple[Path, Path]], report_path: Path, valid_md5: Future[str] | None
) -> dict[str, Any]:
    """Write the report (with the valid file's md5) beside the staged data files, then move them all into place."""
    report = {**result.report(), "valid_md5": valid_md5.result() if data and valid_md5 is not None else None}
    with _staged(report_path) as report_tmp:
        report_tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        for temp, path in [*data, (report_tmp, report_path)]:
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
