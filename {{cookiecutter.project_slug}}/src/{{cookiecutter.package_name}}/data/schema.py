"""The example dataset's row: the single definition of a valid card transaction.

The dataset's place: validation, the golden set and the serving endpoint all derive from
`RowSchema`; change a rule here and all three follow. The engine reads the roles below
(`ID_COLUMN`, `TIME_COLUMN` (None when the data has none), `LABEL_COLUMN`) and `RowSchema` /
`GoldenSchema`; `tools/adopt_data.py` writes this module for another table.
"""

from __future__ import annotations

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


class RowSchema(pa.DataFrameModel):
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


class GoldenSchema(RowSchema):
    """A golden-set row: a transaction plus the slice it stands for."""

    slice: Series[str] = pa.Field(nullable=False, str_length={"min_value": 1})
