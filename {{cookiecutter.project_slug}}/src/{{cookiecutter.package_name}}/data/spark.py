"""The schema's checks on Spark, through Pandera's native pyspark.sql backend (`pip install -e '.[spark]'`).

The Spark schema is built from the same `SchemaSpec` the validate stage evaluates with polars
(`row_checks(as_of)`): the dtypes, nullability, strictness, the key and every built-in
check with its statistics come from `schema.py`, never from a copy here. A check the pyspark
backend has no built-in for is refused with an error, not skipped.

Pandera's pyspark backend tells which checks fail across the whole frame, not which rows: it
records its verdicts in `frame.pandera.errors` instead of raising. `spark_failures` turns them
into (column, check) pairs named as the validate stage names them, so both engines can be held
to the same verdicts. Splitting rows into valid and quarantined stays with the validate stage.

Event times are naive and mean UTC: run the Spark session with `spark.sql.session.timeZone=UTC`,
so a naive timestamp read into Spark is the instant the schema's bounds are compared with.

pyspark is imported only inside these functions: nothing else in the package imports this module.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib
import sys
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import polars as pl

from .validation import POLARS_DTYPES, CheckSpec, ColumnSpec, SchemaSpec, decode_statistic

if TYPE_CHECKING:
    from pandera.api.checks import Check
    from pandera.api.pyspark import DataFrameSchema
    from pyspark.sql import DataFrame

# The polars dtype validation reads a schema dtype name as -> the pyspark.sql type the column must have.
SPARK_TYPES: dict[type[pl.DataType], str] = {
    pl.Int64: "LongType",
    pl.Int32: "IntegerType",
    pl.Float64: "DoubleType",
    pl.Float32: "FloatType",
    pl.Boolean: "BooleanType",
    pl.String: "StringType",
    pl.Datetime: "TimestampType",  # microseconds on Spark: a bound's nanoseconds are dropped
}
# Pandera's pyspark reasons for frame-level failures -> the check names the validate stage lists them under.
UNIQUE_CHECK = "field_uniqueness"
FRAME_CHECKS = {"COLUMN_NOT_IN_SCHEMA": "column_in_schema", "COLUMN_NOT_IN_DATAFRAME": "column_in_dataframe"}
UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class SparkSchemaError(TypeError):
    """The schema holds something the pyspark backend cannot check."""


# ---------------------------------------------------------------- importing Pandera's pyspark backend
@functools.cache
def _pyspark_pandas_imports() -> bool:
    try:
        importlib.import_module("pyspark.pandas")
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _pyspark_backend() -> Iterator[None]:
    """Pandera's pyspark.sql backend, importable and runnable also where `pyspark.pandas` is not.

    pyspark.pandas (pyspark 4.3) imports names pandas 3 removed. Pandera's pyspark.sql backend
    never runs it, but imports it for type aliases and, when it dispatches a check, asks it
    whether a Spark frame is pandas-like (it is not). Where the real import fails, an empty
    stand-in answers those questions while Pandera imports and validates, and is taken away again.
    """
    if _pyspark_pandas_imports():
        yield
        return
    stand_in = types.ModuleType("pyspark.pandas")
    stand_in.__path__ = []  # a package, so `pyspark.pandas.extensions` resolves to the one below
    for name in ("DataFrame", "Series", "Index", "MultiIndex"):
        setattr(stand_in, name, type(name, (), {"__module__": "pyspark.pandas"}))
    extensions = types.ModuleType("pyspark.pandas.extensions")
    for name in ("register_dataframe_accessor", "register_series_accessor", "register_index_accessor"):
        setattr(extensions, name, lambda _name: lambda accessor: accessor)
    placed = {"pyspark.pandas": stand_in, "pyspark.pandas.extensions": extensions}
    sys.modules.update(placed)
    try:
        yield
    finally:
        for name, module in placed.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


# ---------------------------------------------------------------- the schema, for Spark
def spark_schema(spec: SchemaSpec) -> DataFrameSchema:
    """A `pandera.pyspark` schema with the checks of `spec` (from `row_checks(as_of)`, say)."""
    with _pyspark_backend():
        return _spark_schema(spec)


def _spark_schema(spec: SchemaSpec) -> DataFrameSchema:
    # pandera.pyspark's own classes, imported from where they live: the `pandera.pyspark` module also
    # loads the class-based model API, whose typing module needs the real pyspark.pandas.
    import pyspark.sql.types as spark_types
    from pandera.api.pyspark import Column, DataFrameSchema

    keys = [column.name for column in spec.columns if column.unique]
    if len(keys) > 1:  # pyspark's `unique=` is one key over all its columns, not one per column
        raise SparkSchemaError(f"several unique columns {keys}: the pyspark backend checks one key per schema")
    columns = {}
    for column in spec.columns:
        spark_type = SPARK_TYPES.get(POLARS_DTYPES[column.dtype].base_type())
        if spark_type is None:
            raise SparkSchemaError(f"{column.name}: no Spark type for {column.dtype}: add it to SPARK_TYPES")
        columns[column.name] = Column(
            getattr(spark_types, spark_type)(),
            checks=[_spark_check(column, check) for check in column.checks],
            nullable=column.nullable,
            required=column.required,
        )
    return DataFrameSchema(columns, strict=spec.strict, unique=keys or None)


def _spark_check(column: ColumnSpec, check: CheckSpec) -> Check:
    """The pyspark built-in of the same name, with the same statistics and the same label."""
    from pandera.api.checks import Check

    if check.pandera_index is not None or not _has_spark_builtin(check.name):
        raise SparkSchemaError(f"{column.name}: check {check.label!r} has no built-in in Pandera's pyspark backend")
    if not check.ignore_na:  # the pyspark built-ins always let nulls pass
        raise SparkSchemaError(f"{column.name}: check {check.label!r} must see nulls; the pyspark backend skips them")
    return getattr(Check, check.name)(**decode_statistic(check.statistics, _utc_instant), error=check.label)


def _has_spark_builtin(name: str) -> bool:
    from pandera.api.checks import Check
    from pandera.api.pyspark.types import PysparkDataframeColumnObject
    from pandera.backends.pyspark import builtin_checks  # noqa: F401  (registers the pyspark built-ins)

    dispatcher = Check.CHECK_FUNCTION_REGISTRY.get(name)
    return dispatcher is not None and PysparkDataframeColumnObject in dispatcher._function_registry


def _utc_instant(nanoseconds: int) -> dt.datetime:
    """A bound as Spark compares it: a UTC instant (a naive time would be read in the Python process's zone)."""
    return UTC_EPOCH + dt.timedelta(microseconds=nanoseconds // 1000)


# ---------------------------------------------------------------- validating a Spark frame
def spark_failures(frame: DataFrame, spec: SchemaSpec) -> list[tuple[str, str]]:
    """The (column, check) pairs that fail anywhere in `frame`, named as the validate stage names them.

    Each check is one Spark job over the whole frame; the answer says which checks fail, not
    which rows (run the validate stage on a partition's file for those). A check that crashed
    instead of giving a verdict raises.
    """
    with _pyspark_backend():
        from pandera.accessors import pyspark_sql_accessor  # noqa: F401  (`frame.pandera`, where the verdicts go)
        from pandera.config import ValidationDepth, config_context

        schema = _spark_schema(spec)
        # On, schema and data: PANDERA_VALIDATION_ENABLED/_DEPTH in the environment would otherwise skip checks.
        with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
            validated = schema.validate(frame)
    # {category: {reason: [{column, check, error}, ...]}}, in an accessor Pandera adds (type checkers do not see it).
    errors: dict[str, dict[str, list[dict[str, Any]]]] = cast(Any, validated).pandera.errors
    keys = [column.name for column in spec.columns if column.unique]
    entries = [(reason, entry) for reasons in errors.values() for reason, listed in reasons.items() for entry in listed]
    # A column of the wrong type fails on its type alone (as in the validate stage), not also on its checks.
    mistyped = {str(entry["column"]) for reason, entry in entries if reason == "WRONG_DATATYPE"}
    failures: set[tuple[str, str]] = set()
    for reason, entry in entries:
        column, check = str(entry["column"]), str(entry["check"])
        if reason == "CHECK_ERROR" and column not in mistyped:
            raise RuntimeError(f"{column}: {check} did not run on Spark: {entry['error']}")
        if reason == "DUPLICATES":
            failures.update((key, UNIQUE_CHECK) for key in keys)
        elif reason == "COLUMN_NOT_IN_SCHEMA":  # Pandera names the first such column in prose; list them all
            failures.update((name, FRAME_CHECKS[reason]) for name in frame.columns if spec.column(name) is None)
        elif reason == "WRONG_DATATYPE" and (expected := spec.column(column)) is not None:
            failures.add((column, f"dtype('{expected.dtype}')"))
        elif reason != "CHECK_ERROR":
            failures.add((column, FRAME_CHECKS.get(reason, check)))
    return sorted(failures)
