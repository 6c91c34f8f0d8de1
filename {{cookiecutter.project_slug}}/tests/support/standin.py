"""A tiny stand-in bento with the real service's HTTP contract, for testing the deploy engine without a model.

Its answers depend on `scale` (so two builds are two distinguishable "models"), and `mode` makes it fail
the way real releases do: `crash` (dies on start), `never_ready` (/readyz never 200), `wrong` (answers
differ from its own smoke file). Used by tests/deploy/test_deploy_live.py and benchmarks/bench_rollout.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

Mode = Literal["ok", "crash", "never_ready", "wrong"]
STANDIN_NAME = "deploy_standin"

SERVICE = """
import bentoml

MODE = "__MODE__"
SCALE = __SCALE__


@bentoml.service(name="__NAME__", workers=1, logging=dict(access=dict(enabled=False)))
class Standin:
    def __init__(self) -> None:
        if MODE == "crash":
            raise RuntimeError("stand-in bento configured to crash on start")

    def __is_ready__(self) -> bool:
        return MODE != "never_ready"

    @bentoml.api
    async def predict(self, transactions: list[dict]) -> dict:
        shift = 0.5 if MODE == "wrong" else 0.0
        predictions = []
        for row in transactions:
            probability = min(1.0, SCALE * float(row.get("amount", 0.0)) / 1000.0 + shift)
            predictions.append(dict(transaction_id=str(row.get("transaction_id")),
                                    fraud_probability=probability, is_fraud=probability >= 0.5))
        return dict(predictions=predictions, model="standin-model:__VERSION__")
"""

SMOKE_ROWS: list[dict[str, str | float]] = [
    {"transaction_id": "smoke-1", "amount": 120.0},
    {"transaction_id": "smoke-2", "amount": 640.0},
]


def expected_answer(scale: float, version: str) -> dict[str, object]:
    """What a healthy stand-in returns for SMOKE_ROWS."""
    predictions = []
    for row in SMOKE_ROWS:
        probability = min(1.0, scale * float(row["amount"]) / 1000.0)
        predictions.append(
            {
                "transaction_id": row["transaction_id"],
                "fraud_probability": probability,
                "is_fraud": probability >= 0.5,
            }
        )
    return {"predictions": predictions, "model": f"standin-model:{version}"}


def build_standin(
    workdir: Path, version: str, *, scale: float = 0.5, mode: Mode = "ok", bentoml_home: Path | None = None
) -> str:
    """Build a stand-in bento `deploy_standin:<version>` into BENTOML_HOME; return its tag."""
    source = workdir / f"standin-{version}"
    source.mkdir(parents=True, exist_ok=True)
    code = SERVICE.replace("__MODE__", mode).replace("__SCALE__", repr(scale))
    (source / "service.py").write_text(code.replace("__NAME__", STANDIN_NAME).replace("__VERSION__", version))
    smoke = {
        "atol": 1e-6,
        "requests": [
            {
                "path": "/predict",
                "body": {"transactions": SMOKE_ROWS},
                "expected": expected_answer(scale, version),
            }
        ],
    }
    (source / "smoke_requests.json").write_text(json.dumps(smoke, indent=2))
    (source / "bentofile.yaml").write_text(
        'service: "service:Standin"\n'
        'include: ["service.py", "smoke_requests.json"]\n'
        f'labels:\n  model_version: "standin-{version}"\n'
        "python:\n  lock_packages: false\n"
    )
    env = dict(os.environ)
    if bentoml_home is not None:
        env["BENTOML_HOME"] = str(bentoml_home)
    built = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", ".", "--version", version, "-o", "tag"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=source,
    )
    if built.returncode != 0:
        raise RuntimeError(f"bentoml build failed:\n{built.stdout}\n{built.stderr}")
    return f"{STANDIN_NAME}:{version}"
