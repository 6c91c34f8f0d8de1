"""What the benchmarks share: a generated project to measure, its package, child processes, tables.

The benchmarks measure the code of a *generated* project, not the template's
Jinja sources. `--project PATH` points at a baked project; without it the
template's defaults are baked into a scratch folder. Either way the project's
`src/` goes first on `sys.path` (and on `PYTHONPATH` for child processes), so
nothing is installed into the running environment and the benchmark cannot
pick up another installed copy of the package by mistake.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

TEMPLATE = Path(__file__).resolve().parents[1]
QUIET_ENV = {
    "DVC_NO_ANALYTICS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


def add_project_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project",
        type=Path,
        default=None,
        help="a generated project to measure (default: bake the template's defaults into a scratch folder)",
    )


def bake(output_dir: Path) -> Path:
    """Bake the template with its default answers; return the project folder."""
    from cookiecutter.main import cookiecutter

    output_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(QUIET_ENV)
    return Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output_dir)))


def resolve_project(project: Path | None, scratch: Path) -> Path:
    """The project given on the command line, or a fresh default bake under `scratch`."""
    if project is not None:
        project = project.resolve()
        if not (project / "src").is_dir():
            raise SystemExit(f"{project} does not look like a generated project (no src/ folder)")
        return project
    baked = scratch / "bake"
    existing = [p for p in baked.glob("*") if (p / "src").is_dir()] if baked.exists() else []
    return existing[0] if existing else bake(baked)


def package_name(project: Path) -> str:
    """The one importable package under src/."""
    names = sorted(p.parent.name for p in (project / "src").glob("*/__init__.py"))
    if len(names) != 1:
        raise SystemExit(f"expected one package under {project / 'src'}, found {names}")
    return names[0]


def import_package(project: Path) -> ModuleType:
    """Import the project's package from its own src/, refusing a copy installed elsewhere."""
    source = str(project / "src")
    if source not in sys.path:
        sys.path.insert(0, source)
    name = package_name(project)
    package = importlib.import_module(name)
    origin = Path(package.__file__ or "").resolve()
    if not origin.is_relative_to(project / "src"):
        raise SystemExit(f"imported {name} from {origin}, not from {source}: another copy shadows it")
    return package


def child_env(project: Path) -> dict[str, str]:
    """Environment for a child process that imports the project's package from src/."""
    path = os.pathsep.join(p for p in (str(project / "src"), os.environ.get("PYTHONPATH", "")) if p)
    # Bytecode cached as in a user's shell: a shell that forbids it would charge every run of a stage
    # with compiling the project's modules again (a cost the floor, importing only polars, never pays).
    inherited = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**inherited, **QUIET_ENV, "PYTHONPATH": path}


@dataclass
class ChildResult:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mib: float
    cpu_s: float  # user + system, the child's and those of its children it waited for


def run_child(command: Sequence[str], cwd: Path, env: dict[str, str], log_dir: Path) -> ChildResult:
    """Run a command to completion; return its output, wall time and its own peak RSS (Linux/macOS)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / "child.stdout", log_dir / "child.stderr"
    started = time.perf_counter()
    with out_path.open("w") as out, err_path.open("w") as err:
        process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=out, stderr=err)
        # wait4 gives this child's own resource usage; getrusage(RUSAGE_CHILDREN) would mix all children.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return ChildResult(process.returncode, out_path.read_text(), err_path.read_text(), wall,
                       maxrss_mib(usage.ru_maxrss), usage.ru_utime + usage.ru_stime)


def maxrss_mib(ru_maxrss: int) -> float:
    """ru_maxrss is KiB on Linux and bytes on macOS."""
    return ru_maxrss / (1024 * 1024) if sys.platform == "darwin" else ru_maxrss / 1024


def self_peak_rss_mib() -> float:
    import resource

    return maxrss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, columns padded so it also reads well in a terminal."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def rate(count: float, seconds: float) -> str:
    """A throughput with a unit prefix: 1.23 M/s."""
    value = count / seconds if seconds > 0 else float("inf")
    for divisor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= divisor:
            return f"{value / divisor:.2f} {suffix}/s"
    return f"{value:.1f} /s"


def machine_line() -> str:
    """One line that says what the figures were measured on."""
    parts = [f"Python {platform.python_version()}", f"{os.cpu_count()} CPU(s)", platform.machine()]
    for module in ("pandas", "pandera", "polars", "torch", "lightning"):
        loaded = sys.modules.get(module)
        if loaded is not None:
            parts.append(f"{module} {getattr(loaded, '__version__', '?')}")
    return ", ".join(parts)
