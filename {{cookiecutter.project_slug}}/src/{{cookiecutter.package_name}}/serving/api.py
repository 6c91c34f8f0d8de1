"""Request validation, scoring and responses for the served model, derived from the one schema.

Pandera costs ~10 ms a call whatever the batch size, more than the model and
HTTP together, so requests are validated by a strict pydantic model generated
from `RowSchema` (types, ranges, allowed values, string lengths), and
the schema's custom checks run once per request over the whole column. A
validated request becomes one array per column, then one float32 matrix, with
the same feature code training used (`Preprocessor.transform_columns`): no
DataFrame on the request path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from ..data.rows import COLUMN_TYPES, not_in_future
from ..data.schema import ID_COLUMN, LABEL_COLUMN, TIME_COLUMN, RowSchema
from ..monitoring.record import PredictionLogSettings

if TYPE_CHECKING:  # torch is imported by the worker that loads the model, not by every importer
    from ..training.artifact import ScoringModel

MODEL_NAME = "{{ cookiecutter.project_slug }}-model"  # the BentoML model store name
SERVICE_NAME = "{{ cookiecutter.package_name }}_service"  # also the name of its bentos
MODEL_FILE = "model.pt"
EXAMPLE_FILE = "example.json"
SERVE_FILE = "serve.json"  # conf/serve plus the model tag, written into the bento by the package stage
# A string column the schema leaves unbounded still gets a cap: request bodies are untrusted.
MAX_STRING_LENGTH = 256


IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ResponseNames(BaseModel):
    """conf/dataset `response`: the names of a served prediction's fields besides the row's id."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    score: str = Field(pattern=IDENTIFIER)  # the positive-class probability
    decision: str = Field(pattern=IDENTIFIER)  # the score at or above the model's threshold

    @model_validator(mode="after")
    def distinct(self) -> ResponseNames:
        if len({self.score, self.decision, ID_COLUMN}) < 3:
            raise ValueError(f"dataset.response: score, decision and the id column {ID_COLUMN!r} need three names")
        return self


class ServeSettings(BaseModel):
    """What the service needs to start: every key is required, none has a default here (conf/serve is the source)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model_tag: str = Field(min_length=1)
    max_rows_per_request: int = Field(ge=1)
    max_body_bytes: int = Field(ge=1024)
    max_batch_size: int = Field(ge=1)
    max_latency_ms: int = Field(ge=1)
    workers: int = Field(ge=1)
    threads: int = Field(ge=1)
    inline_max_rows: int = Field(ge=0)
    torch_threads: int = Field(ge=1)
    max_concurrency: int = Field(ge=1)
    timeout_s: int = Field(ge=1)
    tracing_excluded_urls: list[str]
    prediction_log: PredictionLogSettings
    response: ResponseNames


def load_serve_settings(path: Path) -> ServeSettings:
    """The packaged settings; a missing or incomplete file stops the service instead of serving a guess."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the serve settings (conf/serve + model tag) are written by the package "
            "stage (`dvc repro package`); the service does not start without them"
        )
    return ServeSettings.model_validate_json(path.read_bytes())


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
FIELD_CHECKS = (*BOUND_CHECKS, "isin", "str_length")


def _constraints(column: Any) -> tuple[Any, dict[str, Any]]:
    """The annotation and pydantic constraints that the column's schema checks translate to."""
    annotation: Any = PYTHON_TYPES.get(str(column.dtype), str)  # pandas spells str several ways
    constraints: dict[str, Any] = {}
    for check in column.checks:
        stats = check.statistics or {}
        if check.name in BOUND_CHECKS:
            value = next(iter(stats.values()))
            constraints[BOUND_CHECKS[check.name]] = value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
        elif check.name == "isin":
            annotation = Literal[tuple(stats["allowed_values"])]
        elif check.name == "str_length":
            constraints["min_length"] = stats.get("min_value")
            constraints["max_length"] = stats.get("max_value")
    return annotation, {k: v for k, v in constraints.items() if v is not None}


def _field_for(column: Any) -> tuple[Any, Any]:
    annotation, constraints = _constraints(column)
    if annotation is float:
        constraints["allow_inf_nan"] = False  # NaN / Infinity literals are not numbers a row can hold
    elif annotation is str:
        constraints["max_length"] = min(constraints.get("max_length", MAX_STRING_LENGTH), MAX_STRING_LENGTH)
    if str(column.dtype).startswith("datetime64"):
        constraints.setdefault("lt", dt.datetime(2262, 1, 1))  # beyond this, datetime64[ns] overflows
    if column.nullable:  # a null the schema allows is sent as JSON null and scored as missing
        return annotation | None, Field(**constraints)
    return annotation, Field(**constraints)


SCHEMA_COLUMNS = {name: c for name, c in RowSchema.to_schema().columns.items() if name != LABEL_COLUMN}
# Strict: "12.5" is not a number, "yes"/"off"/1 are not booleans, 3.5 is not an int (JSON bodies).
Transaction = create_model(  # type: ignore[call-overload]
    "Transaction",
    __config__=ConfigDict(extra="forbid", strict=True),
    **{name: _field_for(column) for name, column in SCHEMA_COLUMNS.items()},
)
# The schema's custom checks (e.g. not_in_future) that cannot be a per-field constraint.
CUSTOM_CHECKS = [
    (name, check)
    for name, column in SCHEMA_COLUMNS.items()
    for check in column.checks
    if check.name not in FIELD_CHECKS
]


def to_columns(rows: Sequence[Any]) -> dict[str, np.ndarray]:
    """Validated rows -> one array per schema column (the form the feature code takes)."""
    return {name: np.array([getattr(row, name) for row in rows], dtype=kind) for name, kind in COLUMN_TYPES.items()}


def custom_check_failures(rows: Sequence[Any], limit: int = 10) -> list[str]:
    """Run the schema's custom checks once over each column of one request; name rows, never their values.

    A check gets the column as a numpy array here (a pandas Series costs ~0.2 ms a call on the
    hot path), so custom checks are written as vectorised comparisons that accept either.
    """
    problems = []
    # A live request's events may not be later than the moment it arrives (plus the schema's slack):
    # the bound of the schema's own check, compared over the column.
    if TIME_COLUMN is not None:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat()
        latest = (not_in_future(now).statistics or {})["max_value"]
        times = np.array([getattr(row, TIME_COLUMN) for row in rows], dtype=COLUMN_TYPES[TIME_COLUMN])
        late = np.flatnonzero(times > np.datetime64(latest))[:limit]
        problems += [f"transactions.{row}.{TIME_COLUMN}: fails not_in_future" for row in late]
    for column, check in CUSTOM_CHECKS:
        values = np.array([getattr(row, column) for row in rows], dtype=COLUMN_TYPES[column])
        passed = np.asarray(check._check_fn(values), dtype=bool)
        problems += [f"transactions.{row}.{column}: fails {check.name}" for row in np.flatnonzero(~passed)[:limit]]
    return problems


def request_model(max_rows: int) -> type[BaseModel]:
    """The body of POST /predict and /predict_batched: 1..max_rows transactions."""

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        transactions: list[Transaction] = Field(min_length=1, max_length=max_rows)  # type: ignore[valid-type]

        @model_validator(mode="after")
        def custom_checks(self) -> PredictRequest:
            problems = custom_check_failures(self.transactions)
            if problems:
                raise ValueError("; ".join(problems))
            return self

    return PredictRequest


@dataclasses.dataclass(frozen=True)
class ResponseShape:
    """A prediction and a /predict response with the dataset's field names: built once per set of names."""

    names: ResponseNames
    prediction: type[BaseModel]
    response: type[BaseModel]

    def predictions(self, ids: list[Any], probabilities: list[float], threshold: float) -> list[BaseModel]:
        score, decision, build = self.names.score, self.names.decision, self.prediction.model_construct
        return [
            build(**{ID_COLUMN: i, score: p, decision: p >= threshold}) for i, p in zip(ids, probabilities, strict=True)
        ]


@functools.lru_cache(maxsize=8)
def response_shape(names: ResponseNames) -> ResponseShape:
    fields: dict[str, Any] = {ID_COLUMN: (str, ...), names.score: (float, ...), names.decision: (bool, ...)}
    prediction = create_model("Prediction", **fields)
    response = create_model("PredictResponse", predictions=(list[prediction], ...), model=(str, ...))  # type: ignore[valid-type]
    return ResponseShape(names, prediction, response)


def shape_of(names: Mapping[str, Any]) -> ResponseShape:
    """The shape for conf/dataset `response` given as plain data; bad names are one ValueError line."""
    try:
        return response_shape(ResponseNames.model_validate(dict(names)))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'names'}: {e['msg']}" for e in error.errors())
        raise ValueError(f"dataset.response: {problems}") from None


# Called with the request's columns and scores once they are known (the prediction log).
ScoreHook = Callable[[dict[str, np.ndarray], np.ndarray], None]


def score_rows(
    model: ScoringModel, rows: Sequence[Any], shape: ResponseShape, on_scored: ScoreHook | None = None
) -> list[BaseModel]:
    """Validated rows -> predictions: the one place that turns scores into what clients see."""
    columns = to_columns(rows)
    probabilities = model.predict_proba_columns(columns)
    if on_scored is not None:
        on_scored(columns, probabilities)
    return shape.predictions(columns[ID_COLUMN].tolist(), probabilities.tolist(), model.threshold)


def predict_rows(
    model: ScoringModel, rows: Sequence[Any], model_tag: str, shape: ResponseShape, on_scored: ScoreHook | None = None
) -> BaseModel:
    """The /predict response for validated rows."""
    return shape.response.model_construct(predictions=score_rows(model, rows, shape, on_scored), model=model_tag)


def score_body(
    model: ScoringModel, body: bytes | str | dict[str, Any], model_tag: str, shape: ResponseShape
) -> BaseModel:
    """Validate a JSON body exactly as the service does, then score it (smoke answers, benchmarks)."""
    raw = json.dumps(body) if isinstance(body, dict) else body
    request = request_model(1_000_000).model_validate_json(raw)
    return predict_rows(model, request.transactions, model_tag, shape)  # type: ignore[attr-defined]
