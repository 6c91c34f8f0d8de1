"""The prediction log: each scored row as one JSON line, through BentoML's monitoring API.

One line per row holds the model's inputs (the schema's columns without the transaction id), the
score, the model version and the time the request was scored; nothing else of the request.
On the request path a request costs one `bentoml.monitor` record of whole columns (no per-row
Python) and a queue put; a background thread turns it into lines and writes them to a daily
rotated file per worker process: `<dir>/<name>/data/data.<pid>.log` (`.YYYY-MM-DD` once rotated).
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from bentoml.monitoring import MonitorBase

from .record import FEATURE_COLUMNS, MODEL_COLUMN, MONITOR_NAME, SCORE_COLUMN, TIME_COLUMN, PredictionLogSettings

WRITE_EVERY_S = 0.05  # the writer thread collects a burst this long; a line reaches the file within it


class JsonLinesMonitor(MonitorBase[Any]):
    """A BentoML monitor whose records are whole columns; a writer thread expands them into JSON lines."""

    def __init__(self, name: str, log_path: str, model_tag: str, keep_days: int = 30, **_: Any) -> None:
        super().__init__(name)
        self.model_tag = model_tag
        self.path = Path(log_path) / name / "data" / f"data.{os.getpid()}.log"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = TimedRotatingFileHandler(self.path, when="midnight", backupCount=keep_days, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.pending: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self.writer = threading.Thread(target=self._write, name=f"{name}-log-writer", daemon=True)
        self.writer.start()
        atexit.register(self.close)

    def export_schema(self, columns_schema: dict[str, dict[str, str]]) -> None:
        """The column roles, once per process, beside the data (BentoML's layout)."""
        schema = Path(self.path.parent.parent, "schema", f"schema.{os.getpid()}.json")
        schema.parent.mkdir(parents=True, exist_ok=True)
        schema.write_text(json.dumps({"model": self.model_tag, "columns": list(columns_schema.values())}))

    def export_data(self, datas: dict[str, deque[Any]]) -> None:
        """One record holds one request: each column logged once, as a sequence."""
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        self.pending.put((now, {name: values[0] for name, values in datas.items()}))

    def _write(self) -> None:
        """Write what is queued in bursts: one write, and one hand-over of the GIL from the request
        threads, per WRITE_EVERY_S under load rather than one per request."""
        stopping = False
        while not stopping:
            batch = [self.pending.get()]
            while batch[-1] is not None:
                try:
                    batch.append(self.pending.get_nowait())
                except queue.Empty:
                    break
            stopping = batch[-1] is None
            lines = []
            for item in batch:
                try:
                    lines += [self._lines(*item)] if item is not None else []
                except Exception:  # a bad record costs only itself, never the log or the rest of the burst
                    logging.getLogger(__name__).exception("prediction log: a record could not be written")
            if lines:  # the handler reports its own write errors
                self.handler.handle(logging.makeLogRecord({"msg": "\n".join(lines)}))
            if not stopping:
                time.sleep(WRITE_EVERY_S)
        self.handler.close()

    def _lines(self, when: str, columns: dict[str, Any]) -> str:
        values = {
            name: (np.datetime_as_string(column, unit="s") if column.dtype.kind == "M" else column).tolist()
            for name, column in columns.items()
        }
        extra = {MODEL_COLUMN: self.model_tag, TIME_COLUMN: when}
        names = list(values)
        return "\n".join(
            json.dumps(dict(zip(names, row, strict=True)) | extra) for row in zip(*values.values(), strict=True)
        )

    def close(self) -> None:
        """Write what is queued, then stop (at exit, so a stopping worker loses no scored request)."""
        if self.writer.is_alive():
            self.pending.put(None)
            self.writer.join(timeout=10)


MONITOR_CLASS = f"{__name__}.{JsonLinesMonitor.__name__}"


def resolve_log_dir(directory: str) -> Path:
    """An absolute log dir as given; a relative one under the folder the server was started from.

    BentoML runs a bento's service inside the bento's own folder in its store, so the process's
    working directory is no anchor (logs would land in the store and go with the bento). The shell's
    $PWD, which `bentoml serve` and the deploy engine inherit, is where `make serve` was run.
    """
    path = Path(directory)
    if path.is_absolute():
        return path
    started_in = os.environ.get("PWD", "")
    base = Path(started_in) if started_in and Path(started_in).is_absolute() and Path(started_in).is_dir() else None
    return (base or Path.cwd()) / path


class PredictionLog:
    """The service's hook on scored requests (`api.score_rows(on_scored=...)`)."""

    def __init__(self, settings: PredictionLogSettings, model_tag: str, name: str = MONITOR_NAME) -> None:
        # BentoML keeps one monitor per name and process, made with the options of its first use.
        self.name = name
        directory = str(resolve_log_dir(settings.dir))
        self.options = {"log_path": directory, "model_tag": model_tag, "keep_days": settings.keep_days}
        self.monitor: MonitorBase[Any] | None = None

    def __call__(self, columns: dict[str, np.ndarray], probabilities: np.ndarray) -> None:
        if self.monitor is None:
            # The first record goes through `bentoml.monitor`, which makes the monitor and keeps it for the
            # process (the class by its import path: what its typed signature and its config file accept).
            with bentoml.monitor(self.name, monitor_class=MONITOR_CLASS, monitor_options=self.options) as record:
                self._log(record, columns, probabilities)
            self.monitor = record
            return
        # Later records use that monitor's own record API, as the context manager does, without its
        # per-call dependency injection (about half the hook's cost on the request path).
        self.monitor.start_record()
        self._log(self.monitor, columns, probabilities)
        self.monitor.stop_record()

    @staticmethod
    def _log(record: MonitorBase[Any], columns: dict[str, np.ndarray], probabilities: np.ndarray) -> None:
        for name in FEATURE_COLUMNS:
            kind = "categorical" if columns[name].dtype.kind in "OUb" else "numerical_sequence"
            record.log(columns[name], name, "feature", kind)
        record.log(probabilities, SCORE_COLUMN, "prediction", "numerical_sequence")
