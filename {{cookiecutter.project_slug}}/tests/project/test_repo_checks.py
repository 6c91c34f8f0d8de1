"""tools/repo_checks.py, the offline guards pre-commit runs: each passes clean files and fails bad ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "repo_checks.py"


def check(name: str, *files: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), name, *extra, *map(str, files)], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("conf.yaml", "a: [1, 2]\nb: {c: d}\n", "a: [1, 2\n"),
        ("dvc.lock", "schema: '2.0'\nstages: {}\n", "stages: {: \n"),
        ("raw.parquet.dvc", "outs:\n- md5: abc\n  path: raw.parquet\n", "outs:\n  - md5: [\n"),
        ("pyproject.toml", "[project]\nname = 'x'\n", "[project\nname = 'x'\n"),
        ("metrics.json", '{"roc_auc": 0.9}\n', '{"roc_auc": 0.9,}\n'),
    ],
)
def test_syntax(tmp_path: Path, name: str, good: str, bad: str) -> None:
    path = tmp_path / name
    path.write_text(good, encoding="utf-8")
    assert check("syntax", path).returncode == 0
    path.write_text(bad, encoding="utf-8")
    result = check("syntax", path)
    assert result.returncode == 1 and f"{path}: does not parse" in result.stderr


def test_large_files(tmp_path: Path) -> None:
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    small.write_bytes(b"x" * 1024)
    big.write_bytes(b"x" * 3 * 1024)
    assert check("large-files", small, extra=("--max-kb", "2")).returncode == 0
    result = check("large-files", small, big, extra=("--max-kb", "2"))
    assert result.returncode == 1 and "dvc add" in result.stderr and "small.csv" not in result.stderr


def test_merge_conflicts(tmp_path: Path) -> None:
    clean, conflicted = tmp_path / "clean.md", tmp_path / "conflicted.py"
    clean.write_text("Title\n=======\n\ntext with <<<<<<< inside a line\n", encoding="utf-8")
    conflicted.write_text("a = 1\n<<<<<<< HEAD\nb = 2\n=======\nb = 3\n>>>>>>> feature\n", encoding="utf-8")
    assert check("merge-conflicts", clean).returncode == 0
    result = check("merge-conflicts", clean, conflicted)
    assert result.returncode == 1 and f"{conflicted}:2: merge conflict marker '<<<<<<<'" in result.stderr
