"""The layout the README describes is the layout on disk, and dvc.yaml -> pipelines/ -> src/ is one hop each."""

from __future__ import annotations

import re
import shutil
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
