#!/usr/bin/env bash
# Create (or reuse) a virtual environment with everything the template and a baked project need.
#   VENV=.venv bash scripts/bootstrap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# torch first and exact: a CPU build is taken where one is on disk; anything looser may pull a CUDA build.
# TORCH_INDEX_URL (CI sets PyTorch's CPU index) is the only index for this one install.
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
# A baked project's dependencies, dev and s3 extras come from its pyproject.toml (one list, not a copy here);
# its slow tier, which the proof tier runs, pushes to and pulls from a local S3 server.
TEMPLATE_PROJECT="{{cookiecutter.project_slug}}"
"$VENV/bin/python" - "$TEMPLATE_PROJECT/pyproject.toml" > "$VENV/project-requirements.txt" <<'PY'
import sys
import tomllib

project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
# `dev` names the project's own `s3` extra: its requirements are listed here, not the project itself.
requirements = project["dependencies"] + extras["dev"] + extras["s3"]
print("\n".join(r for r in requirements if not r.startswith(project["name"] + "[")))
PY
"$VENV/bin/python" -m pip install -q -c "$TEMPLATE_PROJECT/constraints.txt" \
  -r "$VENV/project-requirements.txt" -r requirements-dev.txt
# checkov's pins conflict with the project's (see requirements-checkov.txt): a virtualenv of its own, as pipx
# would make, and a link on this environment's PATH.
CHECKOV_VENV="$VENV/tools/checkov"
if [ ! -x "$CHECKOV_VENV/bin/python" ]; then
  "$PYTHON" -m venv "$CHECKOV_VENV"
fi
"$CHECKOV_VENV/bin/python" -m pip install -q -r requirements-checkov.txt
ln -sfn ../tools/checkov/bin/checkov "$VENV/bin/checkov"
echo "environment ready: $VENV"
