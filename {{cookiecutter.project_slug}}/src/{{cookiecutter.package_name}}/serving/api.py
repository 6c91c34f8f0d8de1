"""Request validation and responses for the served model, derived from the one schema.

Pandera costs ~10 ms a call whatever the batch size, more than the model and
HTTP together, so requests are validated by a pydantic model generated from
`TransactionSchema` (types, ranges, allowed values), and the schema's custom
checks run once per batch over the whole column.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator

from ..data.schema import ID_COLUMN, LABEL_COLUMN, TIME_COLUMN, TransactionSchema, not_in_future
from ..training.artifact import ScoringModel

MODEL_NAME = "{{ cookiecutter.project_slug }}-model"  # the BentoML model store name
MODEL_FILE = "model.pt"
EXAMPLE_FILE = "example.json"


def _naive_utc(value: dt.datetime) -> dt.datetime:
    """Timestamps are compared and stored as naive UTC, like the training data."""
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


PYTHON_TYPES: dict[str, Any] = {
    "int64": int,
    "float64": float,
    "bool": bool,
    "datetime64[ns]": Annotated[dt.datetime, AfterValidator(_naive_utc)],
}
BOUND_CHECKS = {
    "greater_than": "gt",
    "greater_than_or_equal_to": "ge",
    "less_than": "lt",
    "less_than_or_equal_to": "le",
}


def _field_for(column: Any) -> tuple[Any, Any]:
    annotation: Any = PYTHON_TYPES.get(str(column.dtype), str)  # pandas spells str several ways
    constraints: dict[str, Any] = {}
    for check in column.checks:
        stats = check.statistics or {}
        if check.name in BOUND_CHECKS:
            value = next(iter(stats.values()))
            constraints[BOUND_CHECKS[check.name]] = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
        elif check.name == "isin":
            annotation = Literal[tuple(stats["allowed_values"])]
        elif check.name == "str_length" and stats.get("min_value") is not None:
            constraints["min_length"] = stats["min_value"]
    if annotation is int:
        constraints["strict"] = True  # "3" or 3.5 is not silently an int
    if str(column.dtype).startswith("datetime64"):
        constraints.setdefault("lt", dt.datetime(2262, 1, 1))  # beyond this, datetime64[ns] overflows
    return annotation, Field(**constraints)


def _row_model() -> type[BaseModel]:
    schema = TransactionSchema.to_schema()
    fields = {name: _field_for(column) for name, column in schema.columns.items() if name != LABEL_COLUMN}
    return create_model("Transaction", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]


Transaction = _row_model()
# The schema's custom checks (e.g. not_in_future) that cannot be a per-field constraint.
CUSTOM_CHECKS = [
    (name, check)
    for name, column in TransactionSchema.to_schema().columns.items()
    for check in column.checks
    if check.name not in (*BOUND_CHECKS, "isin", "str_length")
]


def request_model(max_rows: int) -> type[BaseModel]:
    """The body of POST /predict: 1..max_rows transactions."""

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        transactions: list[Transaction] = Field(min_length=1, max_length=max_rows)  # type: ignore[valid-type]

        @model_validator(mode="after")
        def custom_checks(self) -> PredictRequest:
            problems = custom_check_failures(to_frame(self.transactions))
            if problems:
                raise ValueError("; ".join(problems))
            return self

    return PredictRequest


def custom_check_failures(frame: pd.DataFrame, limit: int = 10) -> list[str]:
    """Run the schema's custom checks once over each column of the batch.

    A live request's events may not be later than the moment it arrives (plus the schema's slack).
    """
    problems = []
    for column, check in [*CUSTOM_CHECKS, (TIME_COLUMN, not_in_future(pd.Timestamp.now(tz="UTC")))]:
        passed = check(frame[column]).check_output
        for row in (~passed).to_numpy().nonzero()[0][:limit]:
            problems.append(
                f"transactions[{row}].{column}: fails {check.error or check.name} ({frame[column].iloc[row]})"
            )
    return problems


class Prediction(BaseModel):
    transaction_id: str
    fraud_probability: float
    is_fraud: bool


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model: str


def to_frame(transactions: list[Any]) -> pd.DataFrame:
    frame = pd.DataFrame([row.model_dump() for row in transactions])
    for name, column in TransactionSchema.to_schema().columns.items():
        if name in frame and str(column.dtype).startswith("datetime"):
            frame[name] = pd.to_datetime(frame[name], utc=True).dt.tz_convert(None).astype("datetime64[ns]")
    return frame


def predict_rows(model: ScoringModel, frame: pd.DataFrame, model_tag: str) -> PredictResponse:
    """The response for `frame`: the one place that turns scores into what clients see."""
    probabilities = model.predict_proba(frame)
    return PredictResponse(
        predictions=[
            Prediction(transaction_id=str(tid), fraud_probability=float(p), is_fraud=bool(p >= model.threshold))
            for tid, p in zip(frame[ID_COLUMN], probabilities, strict=True)
        ],
        model=model_tag,
    )
