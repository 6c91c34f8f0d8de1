"""The shared shell of every pipeline stage: config in, clear errors out."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .config import load_config
from .errors import PipelineError

# Telemetry of the tools underneath stays off (no phoning home from CI), and so do progress bars
# for tiny artifact downloads. The one list: stages, tools, the deploy engine and the tests use it.
TELEMETRY_OFF = {
    "DVC_NO_ANALYTICS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def quiet_environment() -> None:
    """Telemetry off for this process and its children, unless the user set a value."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


def run_stage(name: str, stage: Callable[[DictConfig], int], argv: list[str] | None = None) -> int:
    """Load params.yaml (+ `key=value` overrides from argv), run `stage`, turn known failures into exit 2."""
    quiet_environment()
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s")
    try:
        cfg = load_config(sys.argv[1:] if argv is None else argv)
        return stage(cfg)
    except PipelineError as error:
        print(f"[{name}] ERROR: {error}", file=sys.stderr)
        return 2


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the whole new one, never half of it (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_json(path: Path, data: Any) -> None:
    write_atomically(path, json.dumps(data, indent=2) + "\n")


def write_summary(path: Path, values: Mapping[str, float | int | bool]) -> None:
    """A stage's headline numbers as DVC metrics: flat and numeric, so `dvc metrics show/diff` and
    `dvc exp show` stay readable. The detailed reports are plain outputs beside them."""
    flat = {key: (int(value) if isinstance(value, bool) else value) for key, value in values.items()}
    bad = [key for key, value in flat.items() if not isinstance(value, (int, float))]
    if bad:
        raise TypeError(f"metrics summary {path} holds non-numeric values: {bad}")
    write_json(path, flat)
