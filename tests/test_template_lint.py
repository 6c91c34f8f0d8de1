"""The template's own Python (its tests, benchmarks, scripts) holds to the linter the projects it bakes use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]


def test_the_template_code_passes_ruff() -> None:
    # The baked sources and the hooks are Jinja, Python only once rendered: pyproject.toml excludes them, and
    # the bake tests lint the rendered project.
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "tests", "benchmarks", "scripts"],
                            cwd=TEMPLATE, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
