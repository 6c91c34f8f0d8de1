"""Probes into a serving worker, for tests: `install(ModelService)` in a bento's entry (PROBED_ENTRY).

tests/serving/test_serving.py serves PROBED_ENTRY from a bento folder: the real service (bentos/service.py), and
around it, in the worker process:
- a model that stalls: a row whose transaction_id is STALL_ID makes scoring sleep STALL_S seconds;
- the batches the batched endpoint scored: the row count of each `score_rows` call it makes;
- a DataFrame trap: once armed, building a pandas (or polars) DataFrame raises, and is counted;
- GET /_probe answers all of that plus `gc.get_freeze_count()`; POST /_probe {"arm": bool} arms the trap
  and clears the record of batches.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from pandas.core.generic import NDFrame

from {{ cookiecutter.package_name }}.data.schema import ID_COLUMN
from {{ cookiecutter.package_name }}.serving import service as serving
from {{ cookiecutter.package_name }}.serving.api import ResponseShape
from {{ cookiecutter.package_name }}.training.artifact import ScoringModel

STALL_ID = "stall-the-model"
STALL_S = 5.0
PROBE_PATH = "/_probe"
seen: dict[str, Any] = {"armed": False, "frames_refused": 0, "batches": []}


class FrameOnRequestPath(RuntimeError):
    """Raised instead of building a DataFrame while the trap is armed."""


def refusing(build: Callable[..., Any], kind: type) -> Callable[..., Any]:
    """`build` (a constructor of `kind`, or of a base class) that raises while the trap is armed."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        made = args[0] if args else None  # the instance (__init__) or the class (a classmethod)
        if seen["armed"] and issubclass(made if isinstance(made, type) else type(made), kind):
            seen["frames_refused"] += 1
            raise FrameOnRequestPath(f"a {kind.__module__}.{kind.__name__} was built while serving")
        return build(*args, **kwargs)

    return guarded


_score_columns = ScoringModel.predict_proba_columns
_score_rows = serving.score_rows


def stalling(self: ScoringModel, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    if STALL_ID in columns[ID_COLUMN].tolist():
        time.sleep(STALL_S)
    return _score_columns(self, columns)


def recording(
    model: ScoringModel, rows: Sequence[Any], shape: ResponseShape, on_scored: serving.ScoreHook | None = None
) -> Any:
    seen["batches"].append(len(rows))
    return _score_rows(model, rows, shape, on_scored)


def trap_catches() -> bool:
    """The armed trap refuses a plain pandas and a plain polars DataFrame here, in the worker (a control)."""
    caught = 0
    for build in (lambda: pd.DataFrame({"x": [1.0]}), lambda: pl.DataFrame({"x": [1.0]})):
        try:
            build()
        except FrameOnRequestPath:
            caught += 1
    seen["frames_refused"] -= caught
    return caught == 2


class Probe:
    """ASGI middleware answering PROBE_PATH; every other request goes to the service."""

    def __init__(self, app: serving.ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: serving.Scope, receive: serving.Receive, send: serving.Send) -> None:
        if scope["type"] != "http" or scope["path"] != PROBE_PATH:
            return await self.app(scope, receive, send)
        if scope["method"] == "POST":
            body = await serving.read_body(receive, 1024) or b"{}"
            seen.update(armed=bool(json.loads(body)["arm"]), frames_refused=0, batches=[])
        report = {**seen, "freeze_count": gc.get_freeze_count()}
        report["trap_catches"] = trap_catches() if seen["armed"] else None
        await serving.reply(send, 200, report)


def install(service: Any) -> None:
    """Put the probes into this process (a serving worker: never a test process) and in front of `service`."""
    # Every pandas DataFrame passes NDFrame.__init__ (DataFrame(...), and _from_mgr behind copies and slices).
    NDFrame.__init__ = refusing(NDFrame.__init__, pd.DataFrame)  # type: ignore[method-assign]
    pl.DataFrame.__init__ = refusing(pl.DataFrame.__init__, pl.DataFrame)  # type: ignore[method-assign]
    from_pydf = refusing(pl.DataFrame._from_pydf.__func__, pl.DataFrame)  # type: ignore[attr-defined]
    pl.DataFrame._from_pydf = classmethod(from_pydf)  # type: ignore[method-assign,assignment]
    ScoringModel.predict_proba_columns = stalling  # type: ignore[method-assign]
    serving.score_rows = recording  # the name the batched endpoint calls
    service.add_asgi_middleware(Probe)


# The bento entry that serves the real service with the probes (run with tests/ on PYTHONPATH).
PROBED_ENTRY = "from service import ModelService\nfrom support.probes import install\n\ninstall(ModelService)\n"
