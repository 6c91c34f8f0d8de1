"""What the engine derives from the dataset's schema (`schema.py`): the checks pinned to a reference time,
the request columns and the array type each travels in.

Generic: it names no column. The dataset's schema module declares the row (`RowSchema`, `GoldenSchema`)
and its roles (`ID_COLUMN`, `TIME_COLUMN` or None, `LABEL_COLUMN`); everything here follows from them.
"""

from __future__ import annotations

import functools

import pandas as pd
import pandera.pandas as pa

from .schema import LABEL_COLUMN, TIME_COLUMN, RowSchema

# A day of slack for clock skew between the source system and this one.
FUTURE_SLACK = pd.Timedelta(days=1)


def as_utc(moment: str | pd.Timestamp) -> pd.Timestamp:
    """`moment` as a naive UTC timestamp: event times are naive and mean UTC (a naive `moment` too)."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def not_in_future(as_of: str | pd.Timestamp) -> pa.Check:
    """No event after `as_of` (UTC) plus the slack: a built-in check, so its bound is in its statistics.

    The reference is passed in, never read from the clock, so the same rows and the same
    reference always give the same verdict (and DVC's cached result stays true). A batch file
    is judged against the time its data was extracted, taken from the config
    (`data.validation.as_of`) rather than from the data: a file cannot vouch for its own
    timestamps, and a DVC param that changes reruns validation. A live request is judged
    against the moment it arrives.
    """
    limit = as_utc(as_of) + FUTURE_SLACK
    return pa.Check.less_than_or_equal_to(limit, error=f"not_in_future({limit})")


@functools.lru_cache(maxsize=16)
def row_schema(as_of: str | pd.Timestamp) -> pa.DataFrameSchema:
    """The row schema, with the future-time check pinned to `as_of` when the data has a time column."""
    schema = RowSchema.to_schema()
    if TIME_COLUMN is None:
        return schema
    checks = [*schema.columns[TIME_COLUMN].checks, not_in_future(as_of)]
    return schema.update_column(TIME_COLUMN, checks=checks)


FEATURE_COLUMNS: tuple[str, ...] = tuple(name for name in RowSchema.to_schema().columns if name != LABEL_COLUMN)


def _array_type(column: pa.Column) -> str:
    """The numpy dtype a column travels in as one array: its own, or object for text and closed sets.

    A nullable integer or boolean column travels as float64, so a missing value is a NaN, not an error.
    """
    kind = str(column.dtype)
    closed = any(check.name == "isin" for check in column.checks)
    if column.nullable and kind in ("int64", "bool"):
        return "float64"
    return kind if kind in ("int64", "float64", "bool", "datetime64[ns]") and not closed else "object"


# Columns whose values may be missing (null in a request and the prediction log, NaN in a feature's array).
NULLABLE_COLUMNS: frozenset[str] = frozenset(
    name for name, column in RowSchema.to_schema().columns.items() if column.nullable
)
# A request's columns (everything but the label) and the array type each is scored and logged in.
COLUMN_TYPES: dict[str, str] = {
    name: _array_type(column) for name, column in RowSchema.to_schema().columns.items() if name != LABEL_COLUMN
}
