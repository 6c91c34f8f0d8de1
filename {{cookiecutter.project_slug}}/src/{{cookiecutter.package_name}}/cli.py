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
# for tiny artifact downloads.
QUIET_DEFAULTS = {
    "DVC_NO_ANALYTICS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def run_stage(name: str, stage: Callable[[DictConfig], int], argv: list[str] | None = None) -> int:
    """Load params.yaml (+ `key=value` overrides from argv), run `stage`, turn known failures into exit 2."""
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s")
    try:
        cfg = load_config(sys.argv[1:] if argv is None else argv)
        return stage(cfg)
    except PipelineError as error:
        print(f"[{name}] ERROR: {error}", file=sys.stderr)
        return 2
