"""The layout the README describes is the layout on disk, and dvc.yaml -> pipelines/ -> src/ is one hop each."""

from __future__ import annotations

import ast
import itertools
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import yaml
from conftest import PROJECT

PACKAGE_DIR = next(p for p in (PROJECT / "src").iterdir() if (p / "__init__.py").is_file())


def layout_block(root: Path = PROJECT) -> str:
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Project layout") :]
    return section.split("```")[1]


# Folders that runs and tools make and the README does not describe (git-ignored, or a venv).
UNNAMED_RUN_OUTPUTS = {"models", "tmp", "venv", "build", "dist", "mlruns", "mlartifacts", "outputs", "multirun"}


def layout_mismatch(root: Path) -> str:
    """How the README's top-level folders differ from `root`'s ('' when they agree).

    A folder the README names may be missing only when .gitignore ignores it: it is made at run time
    (logs/ by the first request a local server answers), so a fresh clone has none and a used one has it.
    """
    named = set(re.findall(r"^([a-z.][\w.-]*)/\s", layout_block(root), flags=re.MULTILINE))
    on_disk = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "src"}
    on_disk = (on_disk - UNNAMED_RUN_OUTPUTS) | {".github"}
    ignored = set(re.findall(r"^/?([\w.-]+)/$", (root / ".gitignore").read_text(encoding="utf-8"), flags=re.MULTILINE))
    unnamed, missing = on_disk - named, named - on_disk - ignored
    return f"not in the README: {sorted(unnamed)}; named but missing: {sorted(missing)}" if unnamed | missing else ""


def test_readme_names_every_top_level_folder_and_nothing_else() -> None:
    assert layout_mismatch(PROJECT) == ""


def test_the_layout_check_holds_before_and_after_a_server_logged_and_catches_a_stray_folder(tmp_path: Path) -> None:
    """This project's top level as a fresh clone has it, then with the prediction log a served request leaves."""
    for name in ("README.md", ".gitignore"):
        shutil.copy(PROJECT / name, tmp_path / name)
    for folder in [p for p in PROJECT.iterdir() if p.is_dir() and p.name not in {"logs", *UNNAMED_RUN_OUTPUTS}]:
        (tmp_path / folder.name).mkdir()
    assert layout_mismatch(tmp_path) == ""
    serve = yaml.safe_load((PROJECT / "conf" / "serve" / "default.yaml").read_text(encoding="utf-8"))
    (tmp_path / serve["prediction_log"]["dir"] / "predictions" / "data").mkdir(parents=True)
    assert layout_mismatch(tmp_path) == ""
    (tmp_path / "scratch").mkdir()
    assert "scratch" in layout_mismatch(tmp_path)


def layout_part(folder: str, block: str | None = None) -> str:
    """The README layout's lines for one top-level folder: its own line and the indented ones under it."""
    block = layout_block() if block is None else block
    start = block.index(f"\n{folder}")
    end = re.compile(r"^\S", flags=re.MULTILINE).search(block, start + 1 + len(folder))
    return block[start : end.start() if end else len(block)]


def test_readme_names_every_library_subpackage() -> None:
    named = set(re.findall(r"^  ([a-z_]+)/\s", layout_part("src/"), flags=re.MULTILINE))
    subpackages = {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file()}
    assert named == subpackages
    top_modules = {p.name for p in PACKAGE_DIR.glob("*.py") if p.name != "__init__.py"}
    listed = set(re.findall(r"[a-z_]+\.py", layout_block().split(f"src/{PACKAGE_DIR.name}/")[1].split("\n")[1]))
    assert listed == top_modules, "the README's line of top-level modules is out of date"


# The one tests folder that mirrors no subpackage: the tests of the project as a whole.
WHOLE_PROJECT_TESTS = "project"


def mirror_mismatch(tests_dir: Path, package_dir: Path = PACKAGE_DIR) -> str:
    """How `tests_dir` fails to mirror the package ('' when it does).

    Each subpackage's tests sit in the tests folder of its name, so a new subpackage cannot go untested
    unnoticed; a test file beside conftest.py is named for a top-level module; the only other folder of
    tests is project/.
    """
    subpackages = {p.name for p in package_dir.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in package_dir.glob("*.py")} - {"__init__"}
    folders = {p.parent.name for p in tests_dir.glob("*/test_*.py")}
    top_level = {p.stem.removeprefix("test_") for p in tests_dir.glob("test_*.py")}
    problems = {
        "subpackages without tests": subpackages - folders,
        "test folders for no subpackage": folders - subpackages - {WHOLE_PROJECT_TESTS},
        "tests beside conftest.py for no top-level module": top_level - modules,
    }
    return "; ".join(f"{what}: {sorted(names)}" for what, names in problems.items() if names)


def test_tests_mirror_the_library() -> None:
    assert mirror_mismatch(PROJECT / "tests") == ""


def test_the_mirror_check_catches_a_missing_folder_a_stray_one_and_a_misplaced_test(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    shutil.copytree(PROJECT / "tests", tests, ignore=shutil.ignore_patterns("__pycache__"))
    assert mirror_mismatch(tests) == ""
    (tests / "evaluation").rename(tests / "evaluations")
    assert mirror_mismatch(tests) == (
        "subpackages without tests: ['evaluation']; test folders for no subpackage: ['evaluations']"
    )
    (tests / "evaluations").rename(tests / "evaluation")
    (tests / "test_gate.py").write_text("", encoding="utf-8")  # gate.py is release/'s: tests/release/
    assert mirror_mismatch(tests) == "tests beside conftest.py for no top-level module: ['gate']"


def readme_tests_mismatch(block: str, tests_dir: Path) -> str:
    """How the README layout's tests/ lines differ from the folders and files in `tests_dir` ('' if not)."""
    text = layout_part("tests/", block).split("\n", 2)[2]  # the lines under tests/, not its own
    named = set(re.findall(r"\b([a-z_]+)/", text)) | set(re.findall(r"\b[a-z_]+\.py\b", text))
    on_disk = {p.name for p in tests_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    on_disk |= {p.name for p in tests_dir.glob("*.py")}
    unnamed, missing = on_disk - named, named - on_disk
    return f"not in the README: {sorted(unnamed)}; named but missing: {sorted(missing)}" if unnamed | missing else ""


def test_readme_names_every_tests_folder_and_top_level_file() -> None:
    assert readme_tests_mismatch(layout_block(), PROJECT / "tests") == ""


def test_the_readme_tests_check_catches_a_folder_it_does_not_name() -> None:
    without = layout_block().replace(" monitoring/\n", "\n", 1)  # the tests/ lines' last folder
    expected = "not in the README: ['monitoring']; named but missing: []"
    assert readme_tests_mismatch(without, PROJECT / "tests") == expected


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
