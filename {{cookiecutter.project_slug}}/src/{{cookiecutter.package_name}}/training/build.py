"""What the train stage's config asks for, checked before anything is written.

A bad key or a missing GPU is refused with one line, leaving the checkpoints and the MLflow store as they were.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import BufferingHandler
from typing import Any

import torch
from omegaconf import DictConfig

from ..errors import TrainingError
from .model import BinaryClassifier

# Trainer arguments the stage sets itself; a config value for them would be silently overridden.
STAGE_TRAINER_ARGUMENTS = ("logger", "callbacks", "enable_progress_bar", "enable_model_summary", "default_root_dir")


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """A clear message instead of a deep stack trace when the config asks for hardware that is not here."""
    if str(trainer_cfg.get("accelerator", "cpu")) not in ("gpu", "cuda"):
        return
    if not torch.cuda.is_available():
        raise TrainingError(
            "this config asks for a GPU (trainer.accelerator=gpu) but none is visible to torch "
            "(torch.cuda.is_available() is False). Train on CPU with `dvc exp run -S trainer=cpu` "
            "or run on a machine with a CUDA GPU and a CUDA build of torch."
        )
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int) and devices > torch.cuda.device_count():
        raise TrainingError(f"trainer.devices={devices} but only {torch.cuda.device_count()} GPU(s) are visible")


def _target_parameters(node: DictConfig, name: str) -> tuple[set[str], bool]:
    """The keyword arguments the `_target_` of a config group accepts, and whether it takes any (**kwargs)."""
    target = str(node.get("_target_", ""))
    module_name, _, attribute = target.rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise TrainingError(f"{name}._target_={target!r} cannot be imported: {error}") from error
    parameters = inspect.signature(factory).parameters.values()
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return {p.name for p in parameters}, accepts_any


def _check_arguments(node: DictConfig, name: str, set_by_stage: tuple[str, ...]) -> None:
    accepted, accepts_any = _target_parameters(node, name)
    keys = {str(key) for key in node if not str(key).startswith("_")}
    unknown = sorted(keys - accepted) if not accepts_any else []
    if unknown:
        close = {match for key in unknown for match in difflib.get_close_matches(key, accepted, n=1)}
        hint = f"did you mean {', '.join(sorted(close))}?" if close else f"see the arguments of {node._target_}"
        raise TrainingError(f"unknown {name} setting(s) {', '.join(f'{name}.{k}' for k in unknown)}: {hint}")
    for key in sorted(keys):  # a node of its own (model.optimizer): its keys against its own _target_
        child = node.get(key)
        if isinstance(child, DictConfig) and "_target_" in child:
            _check_arguments(child, f"{name}.{key}", ())
    clashing = sorted(keys & set(set_by_stage))
    if clashing:
        raise TrainingError(f"{', '.join(f'{name}.{k}' for k in clashing)} is set by the train stage itself")


def check_trainable(cfg: DictConfig) -> None:
    """Refuse, before any side effect, what this machine or these classes cannot run."""
    for group in ("trainer", "model"):
        if not isinstance(cfg.get(group), DictConfig):
            raise TrainingError(
                f"{group}={cfg.get(group)!r} is not a composed config: compose a group choice into params.yaml "
                f"first (`python tools/params.py {group}={cfg.get(group)}` or `dvc exp run -S {group}=...`)"
            )
    _check_arguments(cfg.trainer, "trainer", STAGE_TRAINER_ARGUMENTS)
    _check_arguments(cfg.model, "model", ("in_features",))
    check_accelerator(cfg.trainer)


def instantiated(node: DictConfig, name: str, **arguments: Any) -> Any:
    """`instantiate(node, **arguments)`, a refusal turned into one line under the key it names.

    A constructor's error that names one of the node's keys ("dropout: ...", "`max_epochs` must be ...",
    "Precision 'x' is invalid") is shown under the key named first (model.dropout: ...); any other under
    the node (trainer: ...).
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        with held_logs("lightning.pytorch", "lightning.fabric"):  # a refusal: one line, no start-up lines
            return instantiate(node, **arguments)
    except (InstantiationException, ValueError, TypeError) as error:
        raise refusal(node, name, error) from error


@contextmanager
def held_logs(*names: str) -> Iterator[None]:
    """The records of these loggers (and their children) held back, shown once the block succeeds."""
    loggers = [logging.getLogger(name) for name in names]
    holders = [BufferingHandler(capacity=10_000) for _ in loggers]
    saved = [(logger.handlers[:], logger.propagate) for logger in loggers]
    for logger, holder in zip(loggers, holders, strict=True):
        logger.handlers, logger.propagate = [holder], False
    try:
        yield
    finally:
        for logger, (handlers, propagate) in zip(loggers, saved, strict=True):
            logger.handlers, logger.propagate = handlers, propagate
    for logger, holder in zip(loggers, holders, strict=True):
        for record in holder.buffer:
            logger.handle(record)


def refusal(node: DictConfig, name: str, error: Exception) -> TrainingError:
    """One line naming the key the error is about, with the constructor's own rule."""
    from hydra.errors import InstantiationException

    cause = error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error
    message = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    named = {
        match.start(): str(key)
        for key in node
        if not str(key).startswith("_")
        and (match := re.search(rf"(?<![A-Za-z0-9_]){re.escape(str(key))}(?![A-Za-z0-9_])", message, re.IGNORECASE))
    }
    if not named:
        return TrainingError(f"{name}: {message}")
    key = named[min(named)]
    rule = message.removeprefix(f"{key}:").strip()  # "dropout: a probability ..." reads as model.dropout: ...
    return TrainingError(f"{name}.{key}: {rule}")


def build_model(model_cfg: DictConfig, in_features: int) -> BinaryClassifier:
    """The model and its optimizer built from config, so bad values fail here, before any side effect."""
    # _convert_="all": plain lists in the hyperparameters, so checkpoints load with weights_only=True.
    model: BinaryClassifier = instantiated(model_cfg, "model", in_features=in_features, _convert_="all")
    try:
        model.configure_optimizers()  # a throwaway optimizer: its values are checked now, not mid-run
    except (ValueError, TypeError) as error:
        raise refusal(model_cfg, "model", error) from error
    return model
