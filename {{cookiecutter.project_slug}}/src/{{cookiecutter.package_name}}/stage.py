"""The shared shell of every pipeline stage: config in, clear errors out."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

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
