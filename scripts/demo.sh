#!/usr/bin/env bash
# The main job end to end: bake a project into OUT (default /tmp/gitops-ml-demo) and run its whole pipeline.
#   bash scripts/demo.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
TEMPLATE="$PWD"
OUT="${1:-/tmp/gitops-ml-demo}"
VENV="${VENV:-.venv}"
bash scripts/bootstrap.sh
source "$VENV/bin/activate"
export DVC_NO_ANALYTICS=1 BENTOML_DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
rm -rf "$OUT/fraud-detection" "$OUT/fraud-detection-dvc-remote"
mkdir -p "$OUT"
cookiecutter --no-input "$TEMPLATE" -o "$OUT"
cd "$OUT/fraud-detection"
echo "== setup: install the project, make the first data version"
python -m pip install -q -c constraints.txt -e '.[dev]'
python tools/data_version.py --commit
echo "== dvc repro"
dvc repro
dvc push -q
echo "== result"
python - <<'PY'
import json
overall = json.load(open("reports/metrics.json"))["overall"]
gate = json.load(open("reports/gate.json"))
print("golden set:", ", ".join(f"{k}={overall[k]:.4f}" for k in ("roc_auc", "pr_auc", "brier", "recall", "precision")))
print("gate:", "PASSED" if gate["passed"] else "FAILED", f"({sum(c['passed'] for c in gate['checks'])}/{len(gate['checks'])} checks)")
print("package:", json.load(open("reports/package.json")))
PY
echo "project: $OUT/fraud-detection (model card: reports/model_card.html)"
