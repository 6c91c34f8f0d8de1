"""Repository guards that pre-commit runs offline, with nothing to download.

    python tools/repo_checks.py syntax FILE...            # YAML, TOML and JSON files parse
    python tools/repo_checks.py large-files FILE...       # nothing over --max-kb goes into git
    python tools/repo_checks.py merge-conflicts FILE...   # no leftover <<<<<<< / >>>>>>> lines

Each prints one line per problem and exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

YAML_SUFFIXES = {".yaml", ".yml", ".dvc"}  # DVC pointer files (*.dvc) and dvc.lock are YAML
YAML_NAMES = {"dvc.lock"}
JSON_SUFFIXES = {".json", ".ipynb"}
CONFLICT_MARKER = re.compile(rb"^(<{7}|>{7})(?: |$)", re.MULTILINE)


def syntax_problem(path: Path) -> str | None:
    """Why `path` does not parse as the format its name says, or None."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix in YAML_SUFFIXES or path.name in YAML_NAMES:
            for _ in yaml.safe_load_all(text):
                pass
        elif path.suffix == ".toml":
            tomllib.loads(text)
        elif path.suffix in JSON_SUFFIXES:
            json.loads(text)
    except (UnicodeDecodeError, yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        return f"{path}: does not parse: {' '.join(str(error).split())}"
    return None


def size_problem(path: Path, max_kb: int) -> str | None:
    """Files past the limit belong in DVC, not git."""
    size_kb = path.stat().st_size / 1024
    if size_kb <= max_kb:
        return None
    return f"{path}: {size_kb:,.0f} KB is over {max_kb} KB; track it with `dvc add {path}` instead of git"


def conflict_problem(path: Path) -> str | None:
    """A merge left its markers in the file."""
    match = CONFLICT_MARKER.search(path.read_bytes())
    if match is None:
        return None
    line = path.read_bytes()[: match.start()].count(b"\n") + 1
    return f"{path}:{line}: merge conflict marker {match.group(1).decode()!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=["syntax", "large-files", "merge-conflicts"])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--max-kb", type=int, default=500, help="size limit for large-files (default 500)")
    args = parser.parse_intermixed_args(argv)
    problems: list[str] = []
    for path in args.files:
        if not path.is_file():
            continue
        if args.check == "syntax":
            problem = syntax_problem(path)
        elif args.check == "large-files":
            problem = size_problem(path, args.max_kb)
        else:
            problem = conflict_problem(path)
        if problem:
            problems.append(problem)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
