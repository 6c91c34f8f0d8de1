"""The layout the README describes is the layout on disk, and dvc.yaml -> pipelines/ -> src/ is one hop each."""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterable
from pathlib import Path

import yaml
from conftest import PROJECT

PACKAGE_DIR = next(p for p in (PROJECT / "src").iterdir() if (p / "__init__.py").is_file())


def layout_block() -> str:
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Project layout") :]
    return section.split("```")[1]


def test_readme_names_every_top_level_folder_and_nothing_else() -> None:
    named = set(re.findall(r"^([a-z.][\w.-]*)/\s", layout_block(), flags=re.MULTILINE))
    on_disk = {p.name for p in PROJECT.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "src"}
    on_disk -= {"models", "tmp", "venv", "build", "dist", "mlruns", "mlartifacts", "outputs", "multirun"}
    on_disk |= {".github"}
    assert named == on_disk, f"README names {sorted(named)}, disk has {sorted(on_disk)}"


def test_readme_names_every_library_subpackage() -> None:
    named = set(re.findall(r"^  ([a-z_]+)/\s", layout_block(), flags=re.MULTILINE))
    subpackages = {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file()}
    assert named == subpackages
    top_modules = {p.name for p in PACKAGE_DIR.glob("*.py") if p.name != "__init__.py"}
    listed = set(re.findall(r"[a-z_]+\.py", layout_block().split(f"src/{PACKAGE_DIR.name}/")[1].split("\n")[1]))
    assert listed == top_modules, "the README's line of top-level modules is out of date"


def test_pipelines_holds_exactly_the_dvc_stages_and_tools_are_listed() -> None:
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        assert stage["cmd"].split()[:2] == ["python", f"pipelines/{name}.py"], f"stage {name} runs {stage['cmd']}"
        assert f"pipelines/{name}.py" in stage["deps"], f"stage {name} does not list its own script"
    assert {p.stem for p in (PROJECT / "pipelines").glob("*.py")} == set(stages)
    block = layout_block()
    tools_text = block[block.index("tools/") : block.index("dvc.yaml  params.yaml")]
    named_tools = set(re.findall(r"\b([a-z_]+)\b", tools_text.split("run:")[1]))
    assert named_tools == {p.stem for p in (PROJECT / "tools").glob("*.py")}


# The library's units (subpackages and top-level modules), lowest first: a unit imports only from its own
# layer or the ones below. Peers in one layer may import each other, but never in a circle.
LAYERS: list[set[str]] = [
    {"errors", "files"},
    {"lineage", "config"},
    {"stage"},
    {"data"},
    {"training"},
    {"evaluation", "monitoring"},
    {"serving"},
    {"release", "deploy"},
]


def _imported_modules(path: Path, module: list[str]) -> list[tuple[str, int]]:
    """Every module `path` imports, as dotted names, wherever the import sits (functions, TYPE_CHECKING)."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1
                package = module if path.name == "__init__.py" else module[:-1]
                base = package[: len(package) - node.level + 1]
                found.append((".".join([*base, *([node.module] if node.module else [])]), node.lineno))
            else:
                found.append((node.module or "", node.lineno))
    return found


def import_graph() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> where: `module:line` of each import between two units."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        module = parts[:-1] if parts[-1] == "__init__" else parts
        if len(module) < 2:
            continue  # the package's own __init__
        for name, line in _imported_modules(path, module):
            target = name.split(".")
            if target[0] == PACKAGE_DIR.name and len(target) > 1 and target[1] != module[1]:
                edges.setdefault((module[1], target[1]), []).append(f"{'.'.join(module)}:{line}")
    return edges


def find_cycle(edges: Iterable[tuple[str, str]]) -> list[str]:
    """One circle of imports between units (first unit repeated at the end), or [] when there is none."""
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)
    done: set[str] = set()

    def visit(unit: str, trail: list[str]) -> list[str]:
        if unit in trail:
            return [*trail[trail.index(unit) :], unit]
        if unit in done:
            return []
        for target in sorted(graph.get(unit, ())):
            cycle = visit(target, [*trail, unit])
            if cycle:
                return cycle
        done.add(unit)
        return []

    for unit in sorted(graph):
        cycle = visit(unit, [])
        if cycle:
            return cycle
    return []


def test_find_cycle_finds_a_circle_and_only_a_circle() -> None:
    assert find_cycle([("a", "b"), ("b", "c"), ("a", "c")]) == []
    assert find_cycle([("a", "b"), ("b", "c"), ("c", "a")]) == ["a", "b", "c", "a"]


def test_the_import_graph_sees_imports_inside_functions() -> None:
    """The graph is only as good as its parser: a lazy import must count like any other."""
    edges = import_graph()
    assert ("serving", "training") in edges, edges  # serving/service.py loads the model inside a function


def test_no_import_cycle_between_units() -> None:
    edges = import_graph()
    cycle = find_cycle(edges)
    where = [f"{a} -> {b} ({', '.join(edges[a, b])})" for a, b in itertools.pairwise(cycle)]
    assert not cycle, "import cycle: " + "; ".join(where)


def test_imports_run_down_the_layers() -> None:
    layer = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
    units = {p.stem for p in PACKAGE_DIR.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert units - {"__init__"} == set(layer), "place every subpackage and top-level module in LAYERS"
    upward = [
        f"{source} -> {target} ({', '.join(where)})"
        for (source, target), where in import_graph().items()
        if layer[target] > layer[source]
    ]
    assert not upward, "imports that run up the layers: " + "; ".join(upward)
