#!/usr/bin/env bash
# The template's test command: set up the environment, then bake projects and run their checks.
#   bash scripts/test.sh              # default tier
#   bash scripts/test.sh -m slow      # the slow tier (full option matrix, servers, act runs)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
bash scripts/bootstrap.sh
export PATH="$PWD/$VENV/bin:$PATH"
export DVC_NO_ANALYTICS=1 BENTOML_DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
exec "$VENV/bin/python" -m pytest "$@"
