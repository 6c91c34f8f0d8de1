"""The single definition of a valid transaction row.

Validation, the golden set and the serving endpoint all derive from
`TransactionSchema`; change a rule here and all three follow.
"""

from __future__ import annotations

import functools

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

ID_COLUMN = "transaction_id"
TIME_COLUMN = "event_time"
LABEL_COLUMN = "is_fraud"
SLICE_COLUMN = "slice"

MERCHANT_CATEGORIES = (
    "grocery",
    "restaurants",
    "fuel",
    "travel",
    "electronics",
    "online_retail",
    "gaming",
    "jewelry",
)
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "BR", "IN", "NG")
EARLIEST_EVENT = pd.Timestamp("2015-01-01")
MAX_AMOUNT = 100_000.0


# A day of slack for clock skew between the source system and this one.
FUTURE_SLACK = pd.Timedelta(days=1)


class TransactionSchema(pa.DataFrameModel):
    """One card transaction, labelled."""

    transaction_id: Series[str] = pa.Field(nullable=False, unique=True, str_length={"min_value": 1})
    event_time: Series[pd.Timestamp] = pa.Field(nullable=False, ge=EARLIEST_EVENT)
    amount: Series[float] = pa.Field(nullable=False, gt=0.0, le=MAX_AMOUNT)
    merchant_category: Series[str] = pa.Field(nullable=False, isin=MERCHANT_CATEGORIES)
    card_country: Series[str] = pa.Field(nullable=False, isin=COUNTRIES)
    merchant_country: Series[str] = pa.Field(nullable=False, isin=COUNTRIES)
    card_present: Series[bool] = pa.Field(nullable=False)
    account_age_days: Series[int] = pa.Field(nullable=False, ge=0, le=36_500)
    txn_count_1h: Series[int] = pa.Field(nullable=False, ge=0, le=1_000)
    amount_avg_30d: Series[float] = pa.Field(nullable=False, ge=0.0, le=MAX_AMOUNT)
    distance_from_home_km: Series[float] = pa.Field(nullable=False, ge=0.0, le=20_040.0)
    is_fraud: Series[int] = pa.Field(nullable=False, isin=[0, 1])

    class Config:
        strict = True  # an extra column is an error, not silently ignored
        coerce = False  # a wrong dtype is an error, not silently cast


class GoldenSchema(TransactionSchema):
    """A golden-set row: a transaction plus the slice it stands for."""

    slice: Series[str] = pa.Field(nullable=False, str_length={"min_value": 1})


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
def transaction_schema(as_of: str | pd.Timestamp) -> pa.DataFrameSchema:
    """The transaction schema with the future-time check pinned to `as_of` (built once per reference)."""
    schema = TransactionSchema.to_schema()
    checks = [*schema.columns[TIME_COLUMN].checks, not_in_future(as_of)]
    return schema.update_column(TIME_COLUMN, checks=checks)


FEATURE_COLUMNS: tuple[str, ...] = tuple(
    name for name in TransactionSchema.to_schema().columns if name not in (LABEL_COLUMN,)
)


def _array_type(column: pa.Column) -> str:
    """The numpy dtype a column travels in as one array: its own, or object for text and closed sets."""
    kind = str(column.dtype)
    closed = any(check.name == "isin" for check in column.checks)
    return kind if kind in ("int64", "float64", "bool", "datetime64[ns]") and not closed else "object"


# A request's columns (everything but the label) and the array type each is scored and logged in.
COLUMN_TYPES: dict[str, str] = {
    name: _array_type(column) for name, column in TransactionSchema.to_schema().columns.items() if name != LABEL_COLUMN
}
