"""The shared shell of every pipeline stage: config in, clear errors out."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from omegaconf import DictConfig

from .config import load_config
from .errors import PipelineError

# Quiet the telemetry of the tools underneath (no network here, and none wanted in CI).
for _name, _value in (("DVC_NO_ANALYTICS", "1"), ("BENTOML_DO_NOT_TRACK", "true"), ("MLFLOW_DISABLE_TELEMETRY", "true")):
    os.environ.setdefault(_name, _value)


def run_stage(name: str, stage: Callable[[DictConfig], int], argv: list[str] | None = None) -> int:
    """Load params.yaml (+ `key=value` overrides from argv), run `stage`, turn known failures into exit 2."""
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s")
    try:
        cfg = load_config(sys.argv[1:] if argv is None else argv)
        return stage(cfg)
    except PipelineError as error:
        print(f"[{name}] ERROR: {error}", file=sys.stderr)
        return 2
