"""Reject bad answers before anything is written.

Cookiecutter renders this file, then runs it; a non-zero exit makes cookiecutter
delete the half-made output, so a bad answer leaves nothing behind.
"""

from __future__ import annotations

import keyword
import re
import sys

ANSWERS = {
    "project_name": {{ cookiecutter.project_name | tojson }},
    "project_slug": {{ cookiecutter.project_slug | tojson }},
    "package_name": {{ cookiecutter.package_name | tojson }},
    "python_version": {{ cookiecutter.python_version | tojson }},
    "license": {{ cookiecutter.license | tojson }},
    "accelerator": {{ cookiecutter.accelerator | tojson }},
    "include_notebooks": {{ cookiecutter.include_notebooks | tojson }},
    "mlflow_tracking_uri": {{ cookiecutter.mlflow_tracking_uri | tojson }},
    "dvc_remote_url": {{ cookiecutter.dvc_remote_url | tojson }},
    "ci_gpu_runner_label": {{ cookiecutter.ci_gpu_runner_label | tojson }},
    "deploy_target": {{ cookiecutter.deploy_target | tojson }},
    "deploy_runner_label": {{ cookiecutter.deploy_runner_label | tojson }},
    "author_email": {{ cookiecutter.author_email | tojson }},
}

CHOICES = {
    "python_version": ("3.11", "3.12"),
    "license": ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary"),
    "accelerator": ("cpu", "gpu", "ddp"),
    "include_notebooks": ("yes", "no"),
    "deploy_target": ("local", "kubernetes-gitops"),
}

# Import names the generated project depends on: a package with one of these
# names would shadow the real module and break the project at import time.
DEPENDENCY_MODULES = {
    "bentoml", "dvc", "hydra", "lightning", "mlflow", "numpy", "omegaconf", "pandas",
    "pandera", "polars", "pyarrow", "pydantic", "pytest", "ruff", "sklearn", "torch",
    "torchmetrics", "yaml", "matplotlib", "scipy", "jinja2", "requests", "httpx",
    "cookiecutter", "pre_commit", "git", "tests", "pipelines", "src", "conf", "data",
}

SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
TRACKING_URI_PATTERN = re.compile(r"^(sqlite:///\S+|https?://\S+|databricks\S*|file:\S+)$")
RUNNER_LABEL_PATTERN = re.compile(r"^[A-Za-z0-9._-]*$")


def problems(answers: dict[str, str]) -> list[str]:
    """Every reason the answers cannot make a working project."""
    found: list[str] = []
    name = answers["package_name"]
    if not name.isidentifier():
        found.append(f"package_name {name!r} is not a Python identifier (letters, digits, _).")
    elif keyword.iskeyword(name) or keyword.issoftkeyword(name):
        found.append(f"package_name {name!r} is a Python keyword.")
    elif name in sys.stdlib_module_names or name in DEPENDENCY_MODULES:
        found.append(
            f"package_name {name!r} would shadow the module {name!r} "
            "(a standard-library or dependency module); choose another name."
        )
    elif name != name.lower():
        found.append(f"package_name {name!r} must be lower case (PEP 8).")

    slug = answers["project_slug"]
    if not SLUG_PATTERN.match(slug):
        found.append(
            f"project_slug {slug!r} must be lower case letters, digits, '.', '_' or '-', "
            "with no spaces or path separators."
        )
    if not answers["project_name"].strip():
        found.append("project_name is empty.")

    for option, allowed in CHOICES.items():
        if answers[option] not in allowed:
            found.append(f"{option} {answers[option]!r} is not one of: {', '.join(allowed)}.")

    if not TRACKING_URI_PATTERN.match(answers["mlflow_tracking_uri"]):
        found.append(
            f"mlflow_tracking_uri {answers['mlflow_tracking_uri']!r} is not a sqlite:///, "
            "http(s)://, file: or databricks URI."
        )
    if not answers["dvc_remote_url"].strip() or " " in answers["dvc_remote_url"]:
        found.append(f"dvc_remote_url {answers['dvc_remote_url']!r} must be a path or URL without spaces.")
    if not RUNNER_LABEL_PATTERN.match(answers["ci_gpu_runner_label"]):
        found.append(
            f"ci_gpu_runner_label {answers['ci_gpu_runner_label']!r} may hold only letters, digits, '.', '_', '-'."
        )
    # The deployment state file carries the label whichever target is chosen, so switching later is one edit.
    if not answers["deploy_runner_label"] or not RUNNER_LABEL_PATTERN.match(answers["deploy_runner_label"]):
        found.append(
            f"deploy_runner_label {answers['deploy_runner_label']!r} must be a runner label: "
            "letters, digits, '.', '_', '-' (not empty)."
        )
    if "@" not in answers["author_email"]:
        found.append(f"author_email {answers['author_email']!r} is not an e-mail address.")
    return found


def remove_parents_after_exit(output_dir: str) -> None:
    """A slug with '/' made cookiecutter create parent folders, and it deletes only the innermost one.

    A detached helper waits for that deletion, then removes the now-empty parents up to the
    output folder, so a rejected bake leaves nothing behind.
    """
    import os
    import subprocess

    project, top = os.path.abspath("."), os.path.abspath(output_dir)
    cleanup = (
        "import os, sys, time\n"
        "project, top = sys.argv[1], sys.argv[2]\n"
        "deadline = time.time() + 30\n"
        "while os.path.exists(project) and time.time() < deadline: time.sleep(0.05)\n"
        "parent = os.path.dirname(project)\n"
        "while parent.startswith(top + os.sep) and parent != top:\n"
        "    try: os.rmdir(parent)\n"
        "    except OSError: break\n"
        "    parent = os.path.dirname(parent)\n"
    )
    subprocess.Popen([sys.executable, "-c", cleanup, project, top], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    errors = problems(ANSWERS)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors and ("/" in ANSWERS["project_slug"] or "\\" in ANSWERS["project_slug"]):
        # cruft and replays run without an output folder in the context.
        output_dir = {{ cookiecutter.get("_output_dir", "") | tojson }}
        if output_dir:
            remove_parents_after_exit(output_dir)
    sys.exit(1 if errors else 0)
