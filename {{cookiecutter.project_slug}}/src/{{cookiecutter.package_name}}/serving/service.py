"""The BentoML service: POST /predict and /predict_batched, ready only once the model answered a warm-up call.

Built from the packaged serve settings (conf/serve + the exact model tag, see `build_service`):
without them the service does not start. Handlers are `async`: a small request is scored on the
event loop (cheaper than a hand-over to a thread), a large one in a pool of `threads` so that the
loop keeps accepting and parsing requests meanwhile (`score_off_loop_if_large`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
import bentoml
from pydantic import ValidationError

from . import SHADOW_HEADER
from .api import (
    EXAMPLE_FILE,
    MODEL_FILE,
    SERVICE_NAME,
    ScoreHook,
    ServeSettings,
    load_serve_settings,
    predict_rows,
    request_model,
    response_shape,
    score_rows,
)

if TYPE_CHECKING:
    from ..training.artifact import ScoringModel

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
log = logging.getLogger(__name__)
JSON_TYPES = (b"application/json",)
# Set per request by RequestGuard; a request runs in its own task and its handler in a thread that
# inherits the task's context, so the handler sees its own request's value.
shadow_copy: ContextVar[bool] = ContextVar("shadow_copy", default=False)
SHADOW = SHADOW_HEADER.lower().encode()
Result = TypeVar("Result")
Handler = TypeVar("Handler", bound=Callable[..., Any])


class RequestGuard:
    """ASGI middleware: JSON bodies only, bounded in size, before BentoML parses anything; /docs -> the docs."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "GET" and scope["path"].rstrip("/") == "/docs":
            return await reply(send, 307, {"error": "the OpenAPI docs are at / (spec: /docs.json)"}, b"/")
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        shadow_copy.set(SHADOW in headers)
        media_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media_type not in JSON_TYPES:
            return await refuse(scope, send, 415, "the body must be JSON (content-type: application/json)")
        if int(headers.get(b"content-length", b"0") or 0) > self.max_body_bytes:
            return await refuse(scope, send, 413, f"the body is larger than {self.max_body_bytes} bytes")
        body = await read_body(receive, self.max_body_bytes)
        if body is None:
            return await refuse(scope, send, 413, f"the body is larger than {self.max_body_bytes} bytes")
        return await self.app(scope, replay(body, receive), send)


class PromptTimeout:
    """BentoML's request timeout (`traffic.timeout`), with its timer cancelled once the response starts.

    BentoML 1.4's TimeoutMiddleware never cancels the timer it starts per request, so each request's
    context (and through it the request) stays alive for the whole timeout after its answer: at
    ~1,000 req/s and 30 s, ~300k objects that every full garbage collection walks (pauses of 150 ms,
    p99 latency tripled, measured). `use_prompt_timeout` puts this class in its place.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if not started:  # from now on the client gets this answer, however long it takes
                started = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, sending)
        except TimeoutError:
            if started or not deadline.expired():
                raise
            log.warning("timeout 504 on %s: no answer within %g s", scope.get("path"), self.timeout)
            await reply(send, 504, {"error": f"no answer within {self.timeout:g} s"})


def use_prompt_timeout() -> None:
    """Make BentoML build its timeout middleware from PromptTimeout (it looks the class up per app)."""
    from bentoml._internal.server.http import traffic

    if not hasattr(traffic, "TimeoutMiddleware"):
        raise RuntimeError("bentoml moved its TimeoutMiddleware: check whether PromptTimeout is still needed")
    traffic.TimeoutMiddleware = PromptTimeout  # type: ignore[misc,assignment]


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes `limit` (chunked bodies carry no length up front)."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive callable that hands the buffered body over once, then waits on the real one (disconnects)."""
    sent = False

    async def inner() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return inner


async def refuse(scope: Scope, send: Send, status: int, reason: str) -> None:
    log.warning("client error %d on %s: %s", status, scope["path"], reason)
    await reply(send, status, {"error": reason})


async def reply(send: Send, status: int, payload: dict[str, Any], location: bytes | None = None) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(b"location", location)] if location else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ClientErrorLog(logging.Filter):
    """BentoML logs a rejected request as an ERROR with a traceback that quotes the input values:
    turn it into one WARNING line with the field paths and error types only."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            where = "; ".join(describe(e) for e in error.errors(include_input=False)[:10])
            path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "client error 400 on %s: %s", (path, where)
            record.levelno, record.levelname, record.exc_info, record.exc_text = logging.WARNING, "WARNING", None, None
        return True


def describe(error: Any) -> str:
    """Field path and error type; the message only where it is ours (custom checks never quote values)."""
    # A request-wide check (the custom checks) has no field path: its message names the rows.
    where = ".".join(map(str, error["loc"]))[:80] or "body"
    detail = f": {error['msg']}" if error["type"] == "value_error" else ""
    return f"{where} ({error['type']}{detail})"


async def score_off_loop_if_large(
    score: Callable[[], Result], rows: int, inline_max_rows: int, pool: anyio.CapacityLimiter
) -> Result:
    """Run `score` on the event loop when the request is small, else in a thread of `pool`.

    A row costs ~0.15 ms to score, a hand-over to a thread and back ~0.4 ms under load: inline, small
    requests go faster. A large request would hold the loop for milliseconds, so it goes to the pool.
    """
    if rows <= inline_max_rows:
        return score()
    return await anyio.to_thread.run_sync(score, limiter=pool)


def end_with_supervisor() -> None:
    """This worker ends when the `bentoml serve` process that started it ends, even by kill -9.

    Otherwise the worker lives on as an orphan that keeps answering on the port, with no supervisor
    to stop or restart it, and a new `make serve` finds the port taken. Linux: the kernel sends
    SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG); elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    supervisor = os.getppid()
    if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
        log.warning("prctl(PR_SET_PDEATHSIG) failed: this worker would outlive a killed supervisor")
    elif os.getppid() != supervisor:  # the supervisor died before the request was in place
        os.kill(os.getpid(), signal.SIGTERM)


def load_for_serving(path: str, torch_threads: int) -> ScoringModel:
    """torch is imported here, not at module level: BentoML's supervisor imports this module only for its config."""
    import torch

    from ..training.artifact import load_model

    torch.set_num_threads(torch_threads)  # one request is small: intra-op threads would fight over the cores
    return load_model(path)


def prediction_log(settings: ServeSettings, model_tag: str) -> ScoreHook | None:
    """The hook that logs scored rows, or None when conf/serve turns the log off."""
    if not settings.prediction_log.enabled:
        return None
    from ..monitoring.predictions import PredictionLog

    return PredictionLog(settings.prediction_log, model_tag)


def build_service(settings_path: Path) -> Any:
    """The service class for the settings at `settings_path` (the bento's serve.json)."""
    settings = load_serve_settings(settings_path)
    use_prompt_timeout()
    return _service_class(settings, request_model(settings.max_rows_per_request))


def returning(annotation: Any) -> Callable[[Handler], Handler]:
    """Give a handler a return annotation built at run time: BentoML reads the response's OpenAPI schema from it.

    The response's field names come from the settings (conf/dataset `response`), so its class is made when
    the service is, not written in this module.
    """

    def annotate(handler: Handler) -> Handler:
        handler.__annotations__["return"] = annotation
        return handler

    return annotate


def _service_class(settings: ServeSettings, request: type[Any]) -> Any:
    shape = response_shape(settings.response)

    @bentoml.service(
        name=SERVICE_NAME,
        workers=settings.workers,
        threads=settings.threads,
        traffic={"timeout": settings.timeout_s, "max_concurrency": settings.max_concurrency},
        # One access-log line per request costs throughput; errors are still logged.
        logging={"access": {"enabled": False}},
        tracing={"excluded_urls": settings.tracing_excluded_urls},
    )
    class ModelService:
        # The exact version this bento was built with: an old bento must keep serving its own model
        # (a rollback) even when newer versions sit in the model store.
        model_ref = bentoml.models.BentoModel(settings.model_tag)

        def __init__(self) -> None:
            self.ready = False
            end_with_supervisor()
            logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorLog())
            self.model = load_for_serving(self.model_ref.path_of(MODEL_FILE), settings.torch_threads)
            self.tag = str(self.model_ref.tag)
            self.log: ScoreHook | None = None
            self.pool = anyio.CapacityLimiter(settings.threads)  # binds to the event loop at its first use
            example = Path(self.model_ref.path_of(EXAMPLE_FILE)).read_bytes()
            # Warm-up through the request path; /readyz waits for it to succeed.
            predict_rows(self.model, request.model_validate_json(example).transactions, self.tag, shape)
            # After the warm-up: the log holds served traffic only.
            self.log = prediction_log(settings, self.tag)
            # What is alive now (modules, the model, BentoML) lives as long as the process: frozen, it is
            # out of the collector's sight, so a full collection under load no longer walks all of it
            # (p99 at 16 connections ~100 ms without, ~15 ms with, measured).
            gc.collect()
            gc.freeze()
            self.ready = True

        def __is_ready__(self) -> bool:
            return self.ready

        async def off_loop_if_large(self, score: Callable[[], Result], rows: int) -> Result:
            return await score_off_loop_if_large(score, rows, settings.inline_max_rows, self.pool)

        @bentoml.api(route="/predict", input_spec=request)
        @returning(shape.response)
        async def predict(self, transactions: list[Any]) -> Any:
            """Score 1..max_rows_per_request rows in one request."""
            on_scored = None if shadow_copy.get() else self.log
            return await self.off_loop_if_large(
                lambda: predict_rows(self.model, transactions, self.tag, shape, on_scored), len(transactions)
            )

        @bentoml.api(
            route="/predict_batched",
            input_spec=request,
            batchable=True,
            max_batch_size=settings.max_batch_size,
            max_latency_ms=settings.max_latency_ms,
        )
        @returning(list[shape.prediction])  # type: ignore[name-defined]
        async def predict_batched(self, transactions: list[Any]) -> Any:
            """Adaptive batching: rows of concurrent requests scored in one model call.

            Each request is validated on its own before it joins a batch, so a bad row fails only
            its own request and the batch holds valid rows only. A batch mixes requests, so shadow
            copies sent here are logged like the rest.
            """
            return await self.off_loop_if_large(
                lambda: score_rows(self.model, transactions, shape, self.log), len(transactions)
            )

    service: Any = ModelService  # a bentoml Service at run time, whatever the decorator's types say
    service.add_asgi_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes)
    return service
