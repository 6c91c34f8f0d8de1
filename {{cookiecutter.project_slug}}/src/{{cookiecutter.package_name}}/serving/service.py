"""The BentoML service: POST /predict, ready only once the model answered a warm-up call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bentoml

from ..training.artifact import load_model
from .api import (
    EXAMPLE_FILE,
    MODEL_FILE,
    MODEL_NAME,
    Prediction,
    PredictResponse,
    Transaction,
    custom_check_failures,
    predict_rows,
    request_model,
    to_frame,
)

# Written into the bento by the package stage (conf/serve plus the exact model tag it was built with);
# the defaults let the module import anywhere.
SERVE_CONFIG: dict[str, Any] = {
    "max_rows_per_request": 1000,
    "max_batch_size": 256,
    "max_latency_ms": 500,
    "model_tag": f"{MODEL_NAME}:latest",
}
if Path("serve.json").exists():
    SERVE_CONFIG.update(json.loads(Path("serve.json").read_text(encoding="utf-8")))
PredictRequest = request_model(int(SERVE_CONFIG["max_rows_per_request"]))


@bentoml.service(
    name="{{ cookiecutter.package_name }}_service",
    traffic={"timeout": 30, "max_concurrency": 256},
    # One access-log line per request costs throughput; errors are still logged.
    logging={"access": {"enabled": False}},
)
class FraudDetector:
    # The exact version this bento was built with: an old bento must keep serving its own model
    # (a rollback) even when newer versions sit in the model store.
    model_ref = bentoml.models.BentoModel(SERVE_CONFIG["model_tag"])

    def __init__(self) -> None:
        self.ready = False
        self.model = load_model(self.model_ref.path_of(MODEL_FILE))
        self.tag = str(self.model_ref.tag)
        example = json.loads(Path(self.model_ref.path_of(EXAMPLE_FILE)).read_text(encoding="utf-8"))
        # Warm-up: the first call pays for lazy initialisation; /readyz waits for it to succeed.
        predict_rows(self.model, to_frame(PredictRequest(**example).transactions), self.tag)  # type: ignore[attr-defined]
        self.ready = True

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.api(route="/predict", input_spec=PredictRequest)
    async def predict(self, **request: Any) -> PredictResponse:
        """Score 1..max_rows_per_request transactions in one request."""
        return predict_rows(self.model, to_frame(request["transactions"]), self.tag)

    @bentoml.api(
        route="/predict_batched",
        batchable=True,
        max_batch_size=int(SERVE_CONFIG["max_batch_size"]),
        max_latency_ms=int(SERVE_CONFIG["max_latency_ms"]),
    )
    async def predict_batched(self, transactions: list[Transaction]) -> list[Prediction]:  # type: ignore[valid-type]
        """Adaptive batching: rows from concurrent requests are scored together in one model call."""
        frame = to_frame(transactions)
        problems = custom_check_failures(frame)
        if problems:
            raise bentoml.exceptions.InvalidArgument("; ".join(problems))
        return predict_rows(self.model, frame, self.tag).predictions
