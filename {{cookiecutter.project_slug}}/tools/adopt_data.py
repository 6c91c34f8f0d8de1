"""Adopt a table of your own: the project's dataset becomes FILE, and everything follows it.

    python tools/adopt_data.py FILE --label COLUMN [--id COLUMN] [--time COLUMN] [--positive VALUE]
    python tools/adopt_data.py data.csv --label churned --id customer_id --time signup_at --commit

FILE is CSV or parquet, of any size the validate stage can stream (one scan for the statistics, one to
write). The tool
- drafts the row schema with Pandera's own inference (dtypes, nullability) held to the whole file's
  statistics (bounds' signs, closed sets of values), and writes it to src/<package>/data/schema.py;
- writes plain features for it (src/<package>/data/features.py: numbers as they are, nulls as 0 plus a
  missing indicator, closed sets one-hot), sample rows drawn from the schema for the tests
  (src/<package>/data/generate.py), and conf/dataset/<name>.yaml (as_of, slices, thresholds against the
  data's own baseline, behavioural checks, the card's text, the served field names);
- makes an id column where the data has none, turns column names into identifiers, and the label into 0/1;
- splits a golden set that is never trained on: the latest --golden-share of rows by the time column, else
  a seeded hash of the id; writes data/raw/<name>.parquet and data/golden/<name>.parquet and `dvc add`s both;
- points conf/config.yaml at the new dataset (conf/paths/ names the data files after it), recomposes params.yaml.

Every file it replaces is copied first to .adopt-backup/<time>/ (git-ignored); no row is changed or
dropped. A bad argument (an unknown column, a label that is not binary, an empty file, ...) is one
`ERROR:` line, exit 2, and nothing written. At the end it prints what you should review by hand.
Only binary labels are supported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import keyword
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import polars as pl
import yaml

PACKAGE = "{{ cookiecutter.package_name }}"
DATA_DIR = Path("src") / PACKAGE / "data"
BACKUP_DIR = Path(".adopt-backup")
SLICE_COLUMN = "slice"
# Names the project gives columns of its own: the golden set's slice; the prediction log's score, model and time.
RESERVED = {SLICE_COLUMN, "score", "model", "timestamp"}
MAX_CATEGORIES = 50  # a text column with at most this many values is a closed set (one-hot); above, free text
INFERENCE_ROWS = 100_000  # rows Pandera infers dtypes from; statistics come from the whole file
REFUSED = 2
NON_EMPTY = '{"min_value": 1}'  # a text key's pandera length check, as the generated code spells it


class Refused(Exception):
    """An argument or input the tool will not act on; its message is the one line shown."""


def refuse(message: str) -> NoReturn:
    raise Refused(message)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse prints usage plus the error: one line instead
        refuse(f"{message} (see --help)")


def identifier(name: str) -> str:
    """A column name as a Python identifier: lower case, words joined by '_'; a reserved name gets a '_'."""
    text = re.sub(r"[^0-9a-zA-Z]+", "_", name.strip()).strip("_").lower() or "column"
    if text[0].isdigit():
        text = f"c_{text}"
    return f"{text}_" if keyword.iskeyword(text) or text in RESERVED else text


@dataclass
class Column:
    name: str  # identifier, in the adopted files
    source: str  # as in FILE
    kind: str  # int, float, bool, str, time
    nullable: bool
    minimum: Any = None
    categories: tuple[str, ...] | None = None  # a closed set of text values
    std: float | None = None


@dataclass
class Plan:
    name: str
    source: Path
    rows: int
    id_column: str
    id_made: bool
    time_column: str | None
    label: str
    label_source: str
    positive: Any
    negative: Any
    columns: list[Column] = field(default_factory=list)  # every column but the label, id first

    @property
    def features(self) -> list[Column]:
        return [c for c in self.columns if c.name not in (self.id_column, self.time_column) and c.kind != "str"]

    @property
    def categorical(self) -> list[Column]:
        return [c for c in self.columns if c.categories is not None and c.name != self.id_column]


def scan(path: Path) -> pl.LazyFrame:
    if not path.is_file():
        refuse(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.scan_parquet(path)
        if suffix in (".csv", ".txt"):
            return pl.scan_csv(path, infer_schema_length=10_000, try_parse_dates=False)
    except (pl.exceptions.PolarsError, OSError) as error:
        refuse(f"{path}: cannot be read ({type(error).__name__}: {error})")
    refuse(f"{path}: expected a .csv or .parquet file")


def kind_of(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype.is_temporal():
        return "time"
    return "str"


def pandera_draft(frame: pl.LazyFrame) -> dict[str, Any]:
    """Pandera's inferred schema of the first rows: the draft each column's dtype and nullability start from."""
    from pandera.schema_inference.pandas import infer_schema

    sample = frame.head(INFERENCE_ROWS).collect().to_pandas()
    return dict(getattr(infer_schema(sample), "columns", {}))


def plan(args: argparse.Namespace) -> tuple[Plan, pl.LazyFrame]:
    """Check every argument against the file and work out what to write; nothing is written here."""
    source = Path(args.file)
    lazy = scan(source)
    try:
        schema = lazy.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as error:
        refuse(f"{source}: cannot be read ({type(error).__name__}: {error})")
    names = list(schema)
    for option, column in (("--label", args.label), ("--id", args.id), ("--time", args.time)):
        if column is not None and column not in names:
            refuse(f"{option} {column!r}: no such column in {source} (columns: {', '.join(names)})")
    if len({args.label, args.id, args.time} - {None}) < len([c for c in (args.label, args.id, args.time) if c]):
        refuse("--label, --id and --time must name different columns")
    renamed = {name: identifier(name) for name in names}
    clashes = sorted({new for new in renamed.values() if list(renamed.values()).count(new) > 1})
    if clashes:
        refuse(f"columns {', '.join(clashes)} would share a name once made identifiers; rename them in the file")
    dataset = identifier(args.name or source.stem.split(".")[0])
    if not re.fullmatch(r"[a-z][a-z0-9_]*", dataset):
        refuse(f"--name {dataset!r}: use lower-case letters, digits and '_'")

    stats = statistics(lazy, schema, args)
    rows = stats.pop("__rows")
    if rows == 0:
        refuse(f"{source}: the file has no rows")
    label_values = stats.pop("__label_values")
    positive, negative = label_roles(label_values, args, stats[args.label]["nulls"])
    id_column = identifier(args.id) if args.id else unused_name("row_id", renamed.values())
    if args.id and (stats[args.id]["nulls"] or stats[args.id]["unique"] != rows):
        refuse(
            f"--id {args.id!r}: not a key ({stats[args.id]['nulls']} nulls, {stats[args.id]['unique']} "
            f"distinct values in {rows} rows); leave --id out and an id is made"
        )
    time_column = identifier(args.time) if args.time else None
    if args.time and (kind_of(schema[args.time]) not in ("time", "str") or stats[args.time]["nulls"]):
        refuse(f"--time {args.time!r}: expected a timestamp column without nulls")
    draft = pandera_draft(lazy)
    columns = [Column(id_column, args.id or "", "str", False)]
    for name, dtype in schema.items():
        if name in (args.label, args.id):
            continue
        kind = "time" if name == args.time else kind_of(dtype)
        inferred = draft.get(name)
        info = stats[name]
        nullable = bool(info["nulls"]) or bool(inferred is not None and inferred.nullable)
        column = Column(renamed[name], name, kind, nullable)
        if kind in ("int", "float"):
            column.minimum = 0 if info["min"] is not None and info["min"] >= 0 else None
            column.std = float(info["std"] or 0.0)
            if kind == "int" and column.nullable:
                column.kind = "float"  # a missing integer is a NaN: the column travels as float
        elif kind == "str" and info["unique"] <= MAX_CATEGORIES:
            column.categories = tuple(sorted(str(v) for v in info["values"] if v is not None))
        columns.append(column)
    label = identifier(args.label)
    result = Plan(
        dataset, source, rows, id_column, not args.id, time_column, label, args.label, positive, negative, columns
    )
    if not result.features and not result.categorical:
        refuse(f"{source}: no numeric, boolean or closed-set column to learn from")
    return result, lazy


def unused_name(wanted: str, taken: Any) -> str:
    taken = set(taken)
    while wanted in taken:
        wanted += "_"
    return wanted


def statistics(lazy: pl.LazyFrame, schema: pl.Schema, args: argparse.Namespace) -> dict[str, Any]:
    """One pass over the whole file: rows, nulls, minimum, std, distinct counts and small value sets."""
    exprs: list[pl.Expr] = [pl.len().alias("__rows")]
    for name, dtype in schema.items():
        exprs.append(pl.col(name).null_count().alias(f"{name}\0nulls"))
        kind = kind_of(dtype)
        if kind in ("int", "float"):
            exprs += [pl.col(name).min().alias(f"{name}\0min"), pl.col(name).std().alias(f"{name}\0std")]
        if kind == "str" or name == args.id:
            exprs.append(pl.col(name).n_unique().alias(f"{name}\0unique"))
    exprs.append(pl.col(args.label).unique().head(3).implode().alias("__label_values"))
    if args.time is not None and kind_of(schema[args.time]) == "str":  # every value must read as a timestamp
        exprs.append(pl.col(args.time).str.to_datetime(strict=False).null_count().alias("__time_unparsed"))
    try:
        row = lazy.select(exprs).collect(engine="streaming").row(0, named=True)
    except (pl.exceptions.PolarsError, OSError) as error:
        refuse(f"{args.file}: cannot be read ({type(error).__name__}: {error})")
    unparsed = row.get("__time_unparsed") or 0
    if args.time is not None and unparsed > row[f"{args.time}\0nulls"]:
        refuse(f"--time {args.time!r}: {unparsed} values are not timestamps (ISO 8601 expected)")
    stats: dict[str, Any] = {"__rows": row["__rows"], "__label_values": row["__label_values"]}
    for key, value in row.items():
        if "\0" in key:
            name, what = key.split("\0")
            stats.setdefault(name, {})[what] = value
    for name, dtype in schema.items():
        if kind_of(dtype) == "str" and stats[name].get("unique", 0) <= MAX_CATEGORIES:
            values = lazy.select(pl.col(name).unique()).collect(engine="streaming").to_series().to_list()
            stats[name]["values"] = values
    return stats


def label_roles(values: list[Any], args: argparse.Namespace, nulls: int) -> tuple[Any, Any]:
    """(positive, negative) label values; anything but two values, one of them named positive, is refused."""
    present = [v for v in values if v is not None]
    if nulls:
        refuse(f"--label {args.label!r}: {nulls} rows have no label; label or drop them first")
    if len(present) == 1:
        refuse(f"--label {args.label!r} has one distinct value ({present[0]!r}): both classes are needed")
    if len(present) != 2:
        shown = ", ".join(repr(v) for v in present[:3]) + ", ..."
        refuse(
            f"--label {args.label!r} has more than 2 distinct values ({shown}): only binary labels are supported "
            "(multiclass and regression are not)"
        )
    if args.positive is not None:
        match = [v for v in present if str(v) == args.positive]
        if not match:
            refuse(f"--positive {args.positive!r} is not a value of {args.label!r} ({present[0]!r}, {present[1]!r})")
        positive = match[0]
        return positive, next(v for v in present if v != positive)
    if sorted(map(str, present)) in (["0", "1"], ["False", "True"], ["false", "true"]):
        positive = next(v for v in present if str(v).lower() in ("1", "true"))
        return positive, next(v for v in present if v != positive)
    refuse(
        f"--label {args.label!r} has values {present[0]!r} and {present[1]!r}: name the positive one with --positive"
    )


# ---------------------------------------------------------------- writing
def adopted_frame(plan_: Plan, lazy: pl.LazyFrame) -> pl.LazyFrame:
    """The file's rows as the project reads them: identifiers, an id, 0/1 labels, naive UTC times."""
    frame = lazy.rename({c.source: c.name for c in plan_.columns if c.source} | {plan_.label_source: plan_.label})
    if plan_.id_made:
        frame = frame.with_row_index(plan_.id_column).with_columns(
            (pl.lit(f"{plan_.name}-") + pl.col(plan_.id_column).cast(pl.String).str.zfill(9)).alias(plan_.id_column)
        )
    else:
        frame = frame.with_columns(pl.col(plan_.id_column).cast(pl.String))
    casts = [(pl.col(plan_.label) == plan_.positive).cast(pl.Int64).alias(plan_.label)]
    for column in plan_.columns:
        if column.kind == "time":
            parsed = pl.col(column.name)
            if kind_of(lazy.collect_schema()[column.source]) == "str":
                parsed = parsed.str.to_datetime(time_zone=None, strict=True)
            casts.append(parsed.dt.replace_time_zone(None).cast(pl.Datetime("ns")).alias(column.name))
        elif column.kind == "float":
            casts.append(pl.col(column.name).cast(pl.Float64))
        elif column.kind == "int":
            casts.append(pl.col(column.name).cast(pl.Int64))
    order = [c.name for c in plan_.columns] + [plan_.label]
    return frame.with_columns(casts).select(order)


def extracted_at(plan_: Plan, frame: pl.LazyFrame) -> str:
    """`as_of` for the dataset config: now, or the file's last event if that is later (UTC, ISO 8601)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    if plan_.time_column:
        last = frame.select(pl.col(plan_.time_column).max()).collect(engine="streaming").item()
        now = max(now, last.replace(microsecond=0) + dt.timedelta(seconds=1)) if last is not None else now
    return now.isoformat() + "Z"


def golden_mask(plan_: Plan, frame: pl.LazyFrame, share: float, seed: int) -> pl.Expr:
    """The rows of the golden set: the latest `share` by time, else a seeded hash of the id."""
    if plan_.time_column:
        cut = frame.select(pl.col(plan_.time_column).quantile(1 - share, "lower")).collect().item()
        return pl.col(plan_.time_column) > cut
    buckets = 1_000_000
    return (pl.col(plan_.id_column).hash(seed=seed) % buckets) < int(share * buckets)


def schema_module(plan_: Plan) -> str:
    annotations = {"int": "int", "float": "float", "bool": "bool", "str": "str", "time": "pd.Timestamp"}
    lines = []
    for column in plan_.columns:
        arguments = [f"nullable={column.nullable}"]
        if column.name == plan_.id_column:
            arguments += ["unique=True", f"str_length={NON_EMPTY}"]
        if column.minimum is not None:
            arguments.append(f"ge={float(column.minimum) if column.kind == 'float' else int(column.minimum)!r}")
        if column.categories is not None and column.name != plan_.id_column:
            arguments.append(f"isin={list(column.categories)!r}")
        renamed = column.source and column.source != column.name
        source = f"  # {column.source!r} in {plan_.source.name}" if renamed else ""
        line = f"    {column.name}: Series[{annotations[column.kind]}] = pa.Field({', '.join(arguments)})"
        lines.append(line + source if len(line + source) <= 120 else line)  # the mapping is in the config too
    lines.append(f"    {plan_.label}: Series[int] = pa.Field(nullable=False, isin=[0, 1])  # 1: {plan_.positive!r}")
    time = repr(plan_.time_column)
    pandas = "import pandas as pd\n" if plan_.time_column else ""
    return f'''"""The rows of the {plan_.name} dataset: the single definition of a valid row.

Drafted by tools/adopt_data.py from {plan_.source.name} ({plan_.rows} rows): dtypes and nullability from
Pandera's inference, held to the whole file (sign of each number, the closed sets of text values).
Review it: tighten the bounds you know, close or open the sets of values. Validation, the golden set
and the serving endpoint all derive from `RowSchema`.
"""

from __future__ import annotations

{pandas}import pandera.pandas as pa
from pandera.typing import Series

ID_COLUMN = {plan_.id_column!r}
TIME_COLUMN: str | None = {time}
LABEL_COLUMN = {plan_.label!r}
SLICE_COLUMN = "slice"


class RowSchema(pa.DataFrameModel):
    """One labelled row of {plan_.name}."""

{chr(10).join(lines)}

    class Config:
        strict = True  # an extra column is an error, not silently ignored
        coerce = False  # a wrong dtype is an error, not silently cast


class GoldenSchema(RowSchema):
    """A golden-set row: a row plus the slice it stands for."""

    slice: Series[str] = pa.Field(nullable=False, str_length={NON_EMPTY})

'''


def features_module(plan_: Plan) -> str:
    numeric = [c.name for c in plan_.features]
    nullable = [c.name for c in plan_.features if c.nullable]
    categorical = {c.name: c.categories for c in plan_.categorical}
    return f'''"""Row -> model inputs for the {plan_.name} dataset, and the slices reported on.

Written by tools/adopt_data.py: every number and boolean as it is (a null as 0 plus a missing indicator),
every closed set of text values one-hot. Add derived features here (see data/tabular.py); the same code
runs in training, evaluation and serving, and the fitted part lives in the model artifact.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from . import tabular
from .schema import SLICE_COLUMN

NUMERIC_COLUMNS: tuple[str, ...] = {tuple(numeric)!r}
NULLABLE_COLUMNS: tuple[str, ...] = {tuple(nullable)!r}  # each gets a `<name>_missing` indicator
NUMERIC_FEATURES: tuple[str, ...] = tabular.feature_names(NUMERIC_COLUMNS, NULLABLE_COLUMNS)
CATEGORICAL_FEATURES: dict[str, tuple[str, ...]] = {categorical!r}
RAW_COLUMNS: tuple[str, ...] = (*NUMERIC_COLUMNS, *CATEGORICAL_FEATURES)


def numeric_features(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Raw column arrays -> float64 matrix (n_rows, len(NUMERIC_FEATURES))."""
    return tabular.numeric_block(columns, NUMERIC_COLUMNS, NULLABLE_COLUMNS)


def frame_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The raw columns of a frame as arrays, in the form `numeric_features` takes."""
    return tabular.frame_columns(frame, RAW_COLUMNS)


def derive_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric features plus the raw categorical columns, one row per input row (for analysis)."""
    return tabular.feature_frame(frame, numeric_features(frame_columns(frame)), NUMERIC_FEATURES, CATEGORICAL_FEATURES)


def slice_masks(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Named boolean masks of the rows each per-slice metric is computed on."""
    return tabular.slice_masks(frame, SLICE_COLUMN)
'''


def generate_module(plan_: Plan) -> str:
    return f'''"""Where sample rows of the {plan_.name} dataset come from: tests and demos call these two functions.

Written by tools/adopt_data.py: rows drawn from the schema alone (data/synthetic.py), so no row of the real
data reaches a test. Replace them with a richer source of your own if you have one (the example's generator
is one); the real data versions are the DVC-tracked files at paths.raw and paths.golden.
"""

from __future__ import annotations

import pandas as pd

from .synthetic import synthetic_golden, synthetic_rows


def sample_rows(rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` labelled valid rows."""
    return synthetic_rows(rows, seed=seed)


def sample_golden(rows: int, seed: int = 10_000) -> pd.DataFrame:
    """A golden set of `rows` rows in the slice `sample`."""
    return synthetic_golden(rows, seed=seed)
'''


def dataset_config(plan_: Plan, golden_rows: int, as_of: str) -> str:
    steady = sorted((c for c in plan_.features if c.kind == "float" and c.std), key=lambda c: -(c.std or 0))[:3]
    invariance = [
        {
            "name": f"invariance_{c.name}_tiny_change",
            "set": {c.name: {"add": float(f"{0.001 * (c.std or 0):.6g}")}},
            "detail": f"{c.name} moved by 0.1% of its spread must not move any score by more than the limit",
        }
        for c in steady
    ]
    document = {
        "name": plan_.name,
        "as_of": as_of,
        "source": {
            "file": plan_.source.name,
            "rows": plan_.rows,
            "golden_rows": golden_rows,
            "label": {"column": plan_.label_source, "positive": str(plan_.positive), "negative": str(plan_.negative)},
            "columns": {c.name: c.source for c in plan_.columns if c.source and c.source != c.name},
        },
        "card": {
            "task": f"binary classification of {plan_.name} rows ({plan_.label}: {plan_.positive} / {plan_.negative})",
            "positive_class": f"{plan_.label}={plan_.positive}",
            "negative_class": f"{plan_.label}={plan_.negative}",
            "intended_use": f"REVIEW: who uses the {plan_.name} score, for which decision, and with what human review.",
            "out_of_scope": [
                "REVIEW: decisions this model must not make, and populations it was not trained on.",
                "Populations or values outside the training data (an unknown category scores as none of the known).",
            ],
            "label_caveat": "REVIEW: how the labels were made, how noisy or late they are.",
        },
        "response": {"score": "score", "decision": "decision"},
        "thresholds": {"roc_auc": {"min": 0.6}, "brier_skill": {"min": 0.0}},
        "slices": [f"{SLICE_COLUMN}=sample"],
        "behaviour": {"invariance": invariance, "directional": [], "minimum_functionality": []},
    }
    header = (
        f"# The {plan_.name} dataset, declared (written by tools/adopt_data.py from {plan_.source.name}; review\n"
        "# every REVIEW line). Thresholds sit against the data's own baseline: roc_auc 0.5 is chance, brier_skill 0\n"
        "# is always predicting the base rate. Add directional and minimum-functionality checks you know hold\n"
        "# (the edit language: src/<package>/evaluation/behaviour.py).\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=110, allow_unicode=True)


def backup(paths: list[Path], stamp: str) -> Path | None:
    """Copy every existing file about to be replaced under .adopt-backup/<stamp>/ (same relative paths)."""
    target = BACKUP_DIR / stamp
    existing = [p for p in paths if p.exists()]
    for path in existing:
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / path)
    return target if existing else None


def point_config(name: str) -> dict[Path, str]:
    """conf/config.yaml with its dataset default on `name` (conf/paths names the data files after it)."""
    config = Path("conf/config.yaml")
    text = re.sub(r"(?m)^(\s*- dataset: ).*$", rf"\g<1>{name}", config.read_text(encoding="utf-8"))
    return {config: text}


def tidy(modules: list[Path]) -> None:
    """The written modules in the project's own style (ruff, configured in pyproject.toml), as pre-commit wants them."""
    for command in (("format", "--quiet"), ("check", "--fix", "--quiet")):
        if subprocess.run([sys.executable, "-m", "ruff", *command, *map(str, modules)]).returncode != 0:
            print(f"note: `ruff {command[0]}` did not pass on {', '.join(map(str, modules))}: review them")


def run(*command: str) -> None:
    print("$", " ".join(command))
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"ERROR: `{' '.join(command)}` failed (see above)")


def adopt(args: argparse.Namespace) -> int:
    if not 0 < args.golden_share < 1:
        refuse(f"--golden-share {args.golden_share}: expected a share between 0 and 1")
    if not Path("conf/config.yaml").is_file() or not DATA_DIR.is_dir():
        refuse("run this from the project's root folder (conf/config.yaml and src/ not found)")
    plan_, lazy = plan(args)
    frame = adopted_frame(plan_, lazy)
    mask = golden_mask(plan_, frame, args.golden_share, args.seed)
    counts = (
        frame.select(
            mask.sum().alias("golden"),
            (mask & (pl.col(plan_.label) == 1)).sum().alias("golden_positive"),
            (~mask & (pl.col(plan_.label) == 1)).sum().alias("train_positive"),
            (~mask).sum().alias("train"),
        )
        .collect(engine="streaming")
        .row(0, named=True)
    )
    for split in ("golden", "train"):
        positives, rows = counts[f"{split}_positive"], counts[split]
        if positives == 0 or positives == rows:
            refuse(f"the {split} split ({rows} rows) holds one class only: the file is too small or skewed to adopt")
    raw, golden = Path("data/raw") / f"{plan_.name}.parquet", Path("data/golden") / f"{plan_.name}.parquet"
    config = Path("conf/dataset") / f"{plan_.name}.yaml"
    texts = {
        DATA_DIR / "schema.py": schema_module(plan_),
        DATA_DIR / "features.py": features_module(plan_),
        DATA_DIR / "generate.py": generate_module(plan_),
        config: dataset_config(plan_, counts["golden"], extracted_at(plan_, frame)),
        **point_config(plan_.name),
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    # Everything is written under a temporary name first (the data too: the slowest part, and the one a full
    # disk or a bad value stops); only then is what it replaces kept aside and each file moved into place.
    staged: dict[Path, Path] = {}
    try:
        for path, rows in ((raw, ~mask), (golden, mask)):
            path.parent.mkdir(parents=True, exist_ok=True)
            staged[path] = path.with_name(f".{path.name}.adopting")
            part = frame.filter(rows)
            if path == golden:
                part = part.with_columns(pl.lit("sample").alias(SLICE_COLUMN))
            part.sink_parquet(staged[path])
        for path, text in texts.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            staged[path] = path.with_name(f".{path.name}.adopting")
            staged[path].write_text(text, encoding="utf-8")
    except (pl.exceptions.PolarsError, OSError) as error:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)
        refuse(f"{plan_.source}: could not be written as the project's data ({type(error).__name__}: {error})")
    saved = backup(list(staged), stamp)
    for path, temporary in staged.items():
        temporary.replace(path)
    tidy([path for path in texts if path.suffix == ".py"])
    run(sys.executable, "tools/params.py")
    if not args.no_dvc:
        run(sys.executable, "-m", "dvc", "add", str(raw), str(golden))
    if args.commit:
        pointers = [f"{raw}.dvc", f"{golden}.dvc", str(raw.parent / ".gitignore"), str(golden.parent / ".gitignore")]
        run("git", "add", *map(str, texts), "params.yaml", *pointers)
        run("git", "commit", "-m", f"data: adopt {plan_.source.name} as the {plan_.name} dataset")
    report(plan_, counts, raw, golden, config, saved)
    return 0


def report(plan_: Plan, counts: dict[str, int], raw: Path, golden: Path, config: Path, saved: Path | None) -> None:
    kinds = {"float": 0, "int": 0, "bool": 0}
    for column in plan_.features:
        kinds[column.kind] = kinds.get(column.kind, 0) + 1
    free_text = [
        c.name for c in plan_.columns if c.kind == "str" and c.categories is None and c.name != plan_.id_column
    ]
    print(f"adopted {plan_.source} as the {plan_.name} dataset: {plan_.rows} rows")
    print(
        f"  {raw}: {counts['train']} rows to train on; {golden}: {counts['golden']} golden rows, never trained on "
        f"({'the latest by ' + plan_.time_column if plan_.time_column else 'a seeded hash of ' + plan_.id_column})"
    )
    print(
        f"  label {plan_.label}: 1 = {plan_.positive!r}, 0 = {plan_.negative!r}; id {plan_.id_column}"
        f"{' (made: the file has none)' if plan_.id_made else ''}"
    )
    print(
        f"  features: {', '.join(f'{n} {k}' for k, n in kinds.items() if n)}, "
        f"{len(plan_.categorical)} closed sets one-hot; nullable: {sum(c.nullable for c in plan_.features)}"
    )
    if saved:
        print(f"  replaced files are kept in {saved}/")
    print("review by hand:")
    print(f"  - {DATA_DIR / 'schema.py'}: bounds (only signs were inferred), nullable columns, closed sets")
    print(f"  - {config}: the card's REVIEW lines, thresholds, behavioural checks you know hold, served field names")
    if free_text:
        print(f"  - free-text columns kept in the schema but not used as features: {', '.join(free_text)}")
    print(f"  - {config}: as_of, when this data version was extracted (no event may be later), is the adoption time")
    print("next: dvc repro, then git add and commit what it wrote (dvc.lock, reports/)")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", help="the table: .csv or .parquet")
    parser.add_argument("--label", required=True, help="the binary label column")
    parser.add_argument("--positive", help="the label value that means positive (needed unless 0/1 or true/false)")
    parser.add_argument("--id", help="a unique key column (default: an id is made)")
    parser.add_argument("--time", help="an event-time column (the golden set is then the latest rows)")
    parser.add_argument("--name", help="the dataset's name (default: the file's name)")
    parser.add_argument("--golden-share", type=float, default=0.2, help="share of rows in the golden set (0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hash split (0)")
    parser.add_argument("--no-dvc", action="store_true", help="write the files only, no `dvc add`")
    parser.add_argument("--commit", action="store_true", help="git commit the adopted dataset")
    try:
        return adopt(parser.parse_args(argv))
    except Refused as refusal:
        print(f"ERROR: {refusal}", file=sys.stderr)
        return REFUSED


if __name__ == "__main__":
    sys.exit(main())
