"""The layout the README describes is the layout on disk, and dvc.yaml -> pipelines/ -> src/ is one hop each."""

from __future__ import annotations

import re

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
