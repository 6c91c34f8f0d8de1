"""Load and check the composed config every stage reads.

`conf/` (Hydra) is the source of truth; `params.yaml` is its composition,
written by `compose_params` (the same function `dvc exp run` uses), and it is
what stages read so that DVC tracks every value they depend on.
"""

from __future__ import annotations

import difflib
import tempfile
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import PipelineError

PARAMS_FILE = Path("params.yaml")
CONF_DIR = Path("conf")


class ConfigError(PipelineError):
    """A config value is missing, mistyped or unknown."""


# key -> (type, lower bound) for values a typo in an override would silently break.
TYPED_KEYS: dict[str, tuple[type, float | None]] = {
    "seed": (int, 0),
    "data.batch_size": (int, 1),
    "data.val_fraction": (float, 0.0),
    "data.in_memory_max_rows": (int, 0),
    "data.shuffle_buffer_rows": (int, 2),
    "data.validation.max_quarantine_share": (float, 0.0),
    "data.validation.max_failures_listed": (int, 0),
    "data.validation.stream_from_mb": (float, 0.0),
    "data.validation.row_group_size": (int, 1),
    "trainer.max_epochs": (int, 1),
    "model.optimizer.lr": (float, 0.0),
    "model.dropout": (float, 0.0),
    "gate.regression.tolerance": (float, 0.0),
    "gate.regression.n_bootstrap": (int, 10),
    "gate.latency.max_ms_single_row_p99": (float, 0.0),
}


def compose_params(overrides: list[str] | None = None, root: Path = Path(".")) -> str:
    """Compose conf/ with Hydra overrides exactly as `dvc exp run -S` does; return the YAML text."""
    from dvc.utils.hydra import compose_and_dump

    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "params.yaml"
        compose_and_dump(output, str((root / CONF_DIR).resolve()), None, "config", "", list(overrides or []))
        return output.read_text(encoding="utf-8")


def params_drift(root: Path = Path(".")) -> str:
    """A unified diff between params.yaml and a fresh composition of conf/ ('' when they agree)."""
    expected = compose_params(root=root)
    actual = (root / PARAMS_FILE).read_text(encoding="utf-8") if (root / PARAMS_FILE).exists() else ""
    if expected == actual:
        return ""
    return "".join(
        difflib.unified_diff(
            actual.splitlines(keepends=True), expected.splitlines(keepends=True), "params.yaml", "conf/ composed"
        )
    )


def load_config(overrides: list[str] | None = None, params_file: Path = PARAMS_FILE) -> DictConfig:
    """params.yaml, or with overrides conf/ composed by Hydra (group switches honoured), checked for bad values.

    Overrides use Hydra's grammar, as `dvc exp run -S` does: `trainer=ddp trainer.num_nodes=2` switches
    the trainer group, then sets a key in it. A run with overrides is not tracked by DVC; prefer
    `dvc exp run -S ...` for results you keep.
    """
    cfg: DictConfig | ListConfig
    if overrides:
        cfg = _compose(list(overrides), params_file.parent)
    else:
        if not params_file.exists():
            raise ConfigError(f"{params_file} not found: run `python tools/params.py` to compose it from conf/")
        cfg = OmegaConf.load(params_file)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{params_file} must hold a mapping at the top level")
    check_config(cfg)
    return cfg


def _compose(overrides: list[str], root: Path) -> DictConfig | ListConfig:
    from hydra.errors import HydraException

    try:
        composed = yaml.safe_load(compose_params(overrides, root=root))
    except (HydraException, OmegaConfBaseException, yaml.YAMLError, ValueError) as error:
        # Hydra's message spans lines (what failed, how to add a key, why); keep its unindented lines.
        lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.startswith(" ")]
        reason = " ".join(lines) or type(error).__name__
        raise ConfigError(f"bad override {' '.join(overrides)}: {reason}") from error
    return OmegaConf.create(composed)


def check_config(cfg: DictConfig) -> None:
    """Fail with one readable line per problem instead of a stack trace deep in training."""
    problems = [f"missing required value: {key}" for key in sorted(OmegaConf.missing_keys(cfg))]
    for key, (kind, lower) in TYPED_KEYS.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is None:
            continue
        if not _is_kind(value, kind):
            problems.append(f"{key}: expected {kind.__name__}, got {value!r}")
        elif lower is not None and value < lower:
            problems.append(f"{key}: must be >= {lower}, got {value!r}")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _is_kind(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)
