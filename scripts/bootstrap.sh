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
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q -c "{{cookiecutter.project_slug}}/constraints.txt" \
  -r requirements-dev.txt
echo "environment ready: $VENV"
