"""Behavioural checks on the golden set: invariance, directional and minimum functionality.

The checks are declared as data in the dataset's config (`dataset.behaviour` in conf/dataset/):
each one names the columns it edits and how, so this engine names no column of its own. It edits
real golden rows the declared way and reports what it observed, by name; the gate judges the
observations against the limits in conf/gate (one limit per kind of check).

An edit is a mapping of column -> value, where a value is
- a constant: every row gets it;
- `{from: COLUMN, at_least: L, multiply: M, add: A}` (each key optional, `from` defaults to the
  edited column): the row's own value, clipped below at L, times M, plus A;
- `{from: COLUMN, hour: H}`: the row's timestamp moved to hour H of its day;
- `{differs_from: COLUMN, choices: [A, B]}`: the first choice that differs from the row's COLUMN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..data.schema import LABEL_COLUMN, SLICE_COLUMN
from ..errors import PipelineError

Scorer = Callable[[pd.DataFrame], np.ndarray]
KINDS = ("invariance", "directional", "minimum_functionality")
VALUE_KEYS = {"from", "at_least", "multiply", "add", "hour", "differs_from", "choices"}


class BehaviourSpecError(PipelineError):
    """A declared check that cannot be run as written: named, so the fix is in the config."""


@dataclasses.dataclass
class BehaviourResult:
    name: str
    kind: str  # invariance: largest score change; directional, minimum_functionality: share of rows that behave
    observed: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _value(rows: pd.DataFrame, column: str, rule: Any, where: str) -> Any:
    """The new values of `column` for `rows` under one declared rule."""
    if not isinstance(rule, Mapping):
        return rule
    unknown = set(rule) - VALUE_KEYS
    if unknown:
        raise BehaviourSpecError(f"{where}: unknown key(s) {sorted(unknown)}; use {sorted(VALUE_KEYS)}")
    if "differs_from" in rule:
        other = _column(rows, str(rule["differs_from"]), where).to_numpy()
        first, second = list(rule["choices"])[:2]
        return np.where(other == first, second, first)
    source = _column(rows, str(rule.get("from", column)), where)
    if "hour" in rule:
        return source.dt.normalize() + pd.Timedelta(hours=float(rule["hour"]))
    values = source.astype(np.float64) if "at_least" in rule else source
    if "at_least" in rule:
        values = values.clip(lower=float(rule["at_least"]))
    if "multiply" in rule:
        values = values * rule["multiply"]
    if "add" in rule:
        values = values + rule["add"]
    return values.astype(source.dtype) if source.dtype.kind in "iu" and values.dtype.kind == "f" else values


def _column(rows: pd.DataFrame, name: str, where: str) -> pd.Series:
    if name not in rows:
        raise BehaviourSpecError(f"{where}: no column {name!r} in the golden rows (columns: {', '.join(rows)})")
    return rows[name]


def edited(rows: pd.DataFrame, edits: Mapping[str, Any], where: str) -> pd.DataFrame:
    """`rows` with the declared edits applied (each computed from the unedited rows)."""
    values = {str(column): _value(rows, str(column), rule, f"{where}.{column}") for column, rule in edits.items()}
    for column in values:
        _column(rows, column, where)
    return rows.assign(**values)


def _run_check(kind: str, spec: Mapping[str, Any], score: Scorer, rows: pd.DataFrame, threshold: float) -> float:
    where = f"dataset.behaviour.{kind}.{spec.get('name', '?')}"
    changed = edited(rows, spec.get("set") or {}, where)
    if kind == "invariance":
        return float(np.max(np.abs(score(changed) - score(rows))))
    if kind == "directional":
        expect = spec.get("expect")
        if expect not in ("up", "down"):
            raise BehaviourSpecError(f"{where}: expect must be up or down, got {expect!r}")
        before, after = score(rows), score(changed)
        moved_right = after >= before - 1e-9 if expect == "up" else after <= before + 1e-9
        return float(np.mean(moved_right))
    expect = spec.get("expect")
    if expect not in ("positive", "negative"):
        raise BehaviourSpecError(f"{where}: expect must be positive or negative, got {expect!r}")
    flagged = score(changed) >= threshold
    return float(np.mean(flagged if expect == "positive" else ~flagged))


def behavioural_checks(
    score: Scorer,
    golden: pd.DataFrame,
    threshold: float,
    declared: Mapping[str, Sequence[Mapping[str, Any]]],
    sample: int = 2000,
    seed: int = 0,
) -> list[BehaviourResult]:
    """Run every declared check on a seeded sample of golden rows (without the label and slice)."""
    unknown = set(declared) - set(KINDS)
    if unknown:
        raise BehaviourSpecError(f"dataset.behaviour: unknown kind(s) {sorted(unknown)}; use {', '.join(KINDS)}")
    rows = golden.drop(columns=[LABEL_COLUMN, SLICE_COLUMN], errors="ignore")
    rows = rows.sample(n=min(sample, len(rows)), random_state=seed).reset_index(drop=True)
    results = []
    for kind in KINDS:
        for spec in declared.get(kind) or ():
            observed = _run_check(kind, spec, score, rows, threshold)
            results.append(BehaviourResult(str(spec["name"]), kind, observed, str(spec.get("detail", ""))))
    return results
