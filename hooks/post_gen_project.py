"""Finish the generated project: drop unchosen options, then its id, git + DVC from the first minute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

INCLUDE_NOTEBOOKS = {{ cookiecutter.include_notebooks | tojson }} == "yes"
GPU_RUNNER_LABEL = {{ cookiecutter.ci_gpu_runner_label | tojson }}
# The workflows are copied without rendering (they hold GitHub's own ${{ '{{ }}' }}); this marker
# on the training job's runs-on line is the one place the runner label goes.
RUNNER_MARKER = "runs-on: ubuntu-latest  # training runner"

PROJECT = Path.cwd()


def drop_notebooks() -> None:
    for path in PROJECT.glob("notebooks/*.ipynb"):
        path.unlink()
    (PROJECT / "tests" / "project" / "test_notebooks.py").unlink(missing_ok=True)
    (PROJECT / "notebooks" / "README.md").write_text(
        "# Notebooks\n\nThis project was generated without the exploration notebook. Put notebooks here;\n"
        "pre-commit strips their outputs.\n",
        encoding="utf-8",
    )


def set_training_runner(label: str) -> None:
    for workflow in (PROJECT / ".github" / "workflows").glob("*.yml"):
        text = workflow.read_text(encoding="utf-8")
        if RUNNER_MARKER in text:
            workflow.write_text(
                text.replace(RUNNER_MARKER, f"runs-on: [self-hosted, {label}]  # training runner"), encoding="utf-8"
            )


def init_repositories() -> None:
    """The project id, git (and DVC, where this interpreter has it) with the project's own tool, which `make setup`
    reruns. The id is drawn here, once: it is in the first commit, so every clone and copy keeps it."""
    result = subprocess.run([sys.executable, "tools/init_project.py", "--lenient"], cwd=PROJECT,
                            capture_output=True, text=True)
    print(result.stdout.strip())
    if result.returncode != 0:
        print(result.stderr.strip(), file=sys.stderr)
        sys.exit(1)


# --- Record the template for `cruft update` (.cruft.json) ---------------------------------------
TEMPLATE_SOURCE = {{ cookiecutter._template | tojson }}
TEMPLATE_REPO_DIR = {{ cookiecutter.get("_repo_dir", "") | tojson }}
TEMPLATE_CHECKOUT = {{ (cookiecutter.get("_checkout") or "") | tojson }} or None
TEMPLATE_COMMIT = {{ cookiecutter.get("_commit", "") | tojson }}
ANSWERS = json.loads({{ cookiecutter | tojson | tojson }})
# What the hook itself makes (git, DVC) differs in every bake: never diff or patch it on update. (The project
# id it makes too is skipped by the project's pyproject.toml, [tool.cruft], which updates bring to older bakes.)
CRUFT_SKIP = [".git", ".dvc", ".cruft.json"]
# Answers that describe this machine's run of cookiecutter, not the project.
MACHINE_KEYS = ("_output_dir", "_repo_dir", "_checkout")


def template_dir() -> Path | None:
    """The template folder cookiecutter read: relative paths are relative to where it was started."""
    if not TEMPLATE_REPO_DIR:
        return None
    folder = Path(TEMPLATE_REPO_DIR).expanduser()
    if not folder.is_absolute():  # the hook runs inside the new project; the shell's PWD is where we were
        folder = Path(os.environ.get("PWD", ".")) / folder
    return folder.resolve() if folder.is_dir() else None


def template_commit(folder: Path | None) -> str:
    """The template's commit: cruft passes it; for a git checkout of the template, its HEAD."""
    if TEMPLATE_COMMIT:
        return TEMPLATE_COMMIT
    if folder is None:
        return ""
    top = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != folder:
        return ""  # not a checkout of its own (a zip, or a folder inside another repository)
    head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True)
    return head.stdout.strip() if head.returncode == 0 else ""


def template_url(folder: Path | None) -> str:
    """Where `cruft update` clones the template from: a repository URL, or the local checkout's path."""
    from cookiecutter.config import DEFAULT_CONFIG
    from cookiecutter.repository import expand_abbreviations, is_repo_url

    source = expand_abbreviations(TEMPLATE_SOURCE, DEFAULT_CONFIG["abbreviations"])
    return source if is_repo_url(source) or folder is None else str(folder)


def record_template() -> None:
    """Write .cruft.json (template, commit, answers) so `cruft update` can merge template changes later."""
    if (PROJECT / ".cruft.json").exists():
        return
    folder = template_dir()
    commit = template_commit(folder)
    if not commit:
        print("Note: the template is not a git checkout, so this project cannot follow it with `cruft update`.")
        return
    url = template_url(folder)
    answers = {key: value for key, value in ANSWERS.items() if key not in MACHINE_KEYS}
    answers.update({"_template": url, "_commit": commit})
    state = {"template": url, "commit": commit, "checkout": TEMPLATE_CHECKOUT,
             "context": {"cookiecutter": answers}, "directory": None, "skip": CRUFT_SKIP}
    (PROJECT / ".cruft.json").write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    try:
        record_template()
    except (OSError, ImportError, subprocess.SubprocessError) as error:  # never fail a bake over it
        print(f"Note: .cruft.json not written ({error}); `cruft link` can add it later.")
    if not INCLUDE_NOTEBOOKS:
        drop_notebooks()
    if GPU_RUNNER_LABEL:
        set_training_runner(GPU_RUNNER_LABEL)
    init_repositories()
