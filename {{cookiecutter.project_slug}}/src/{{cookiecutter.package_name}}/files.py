"""Files written so that a reader never sees half of one (the one place stages and tools write from),
and documents read with one clear line when they are missing or malformed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A scratch file beside `path` (same file system, so the move is atomic), gone unless moved.

    The process id in its name keeps two writers of one target from sharing a scratch file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the whole new one, never half of it (temp file + rename)."""
    with staged(path) as temporary:
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


def read_document(path: Path, error: type[Exception], missing: str) -> Any:
    """The JSON (by its suffix) or YAML file, parsed; missing or malformed, `error` with one line.

    `missing` says what to do when the file is not there (which stage writes it).
    """
    if not path.is_file():
        raise error(f"{path} not found: {missing}")
    if path.suffix == ".json":
        parse, malformed, kind = json.loads, (ValueError,), "JSON"  # JSONDecodeError is a ValueError
    else:
        import yaml

        parse, malformed, kind = yaml.safe_load, (yaml.YAMLError,), "YAML"
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, *malformed) as problem:
        reason = " ".join(str(problem).split())
        raise error(f"{path} is not valid {kind}: {reason}") from None
