"""package(cfg): approved model -> MLflow `challenger` -> BentoML model + card -> `bentoml build`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ..data.schema import LABEL_COLUMN, SLICE_COLUMN
from ..errors import PipelineError
from ..evaluation.evaluate import load_golden
from ..lineage import file_md5, git_commit
from ..serving.api import EXAMPLE_FILE, MODEL_FILE, MODEL_NAME, SERVE_FILE, score_body
from ..training.artifact import ScoringModel, load_model
from .card import render_card
from .registry import register_challenger

BENTO_DIR = Path("bentos")
# Files the package stage writes into the bento build context (git-ignored there).
SMOKE_FILE, CARD_FILE = "smoke_requests.json", "model_card.md"
SMOKE_ROWS = 8


class PackageError(PipelineError):
    pass


def read_gate(path: Path) -> dict[str, Any]:
    """The gate report, refusing anything but a clear pass (the stage may be run on its own)."""
    if not path.exists():
        raise PackageError(f"{path} not found: the gate must run (and pass) before packaging")
    report = json.loads(path.read_text(encoding="utf-8"))
    if report.get("passed") is not True:
        failed = [c["name"] for c in report.get("checks", []) if not c.get("passed")]
        raise PackageError(f"the gate did not pass ({', '.join(failed) or 'no checks'}): nothing is packaged")
    return report


def request_body(rows: pd.DataFrame) -> dict[str, Any]:
    """A POST /predict body for `rows` (JSON-ready: timestamps as ISO strings)."""
    records = rows.drop(columns=[LABEL_COLUMN, SLICE_COLUMN], errors="ignore").to_dict(orient="records")
    return {
        "transactions": [
            {k: (v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in r.items()} for r in records
        ]
    }


def smoke_requests(model: ScoringModel, golden: pd.DataFrame, model_tag: str) -> dict[str, Any]:
    """Golden rows with the answers this model must give: what a new slot is checked with before it takes traffic."""
    rows = golden.groupby(SLICE_COLUMN, group_keys=False).head(2).head(SMOKE_ROWS)
    body = request_body(rows)
    expected = score_body(model, body, model_tag).model_dump()
    return {"atol": 1e-6, "requests": [{"path": "/predict", "body": body, "expected": expected}]}


def save_bento_model(
    model_path: Path, example: dict[str, Any], card_md: str, labels: dict[str, str], metadata: dict[str, Any]
) -> str:
    import bentoml

    with bentoml.models.create(MODEL_NAME, labels=labels, metadata=metadata) as bento_model:
        shutil.copy(model_path, bento_model.path_of(MODEL_FILE))
        Path(bento_model.path_of(EXAMPLE_FILE)).write_text(json.dumps(example), encoding="utf-8")
        Path(bento_model.path_of(CARD_FILE)).write_text(card_md, encoding="utf-8")
    return str(bento_model.tag)


def build_wheel(destination: Path) -> list[str]:
    """The project's own wheel goes into the bento, so the container runs the same preprocessing code."""
    if destination.exists():
        shutil.rmtree(destination)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", scratch, "."],
            check=True,
        )
        destination.mkdir(parents=True)
        for wheel in Path(scratch).glob("*.whl"):
            shutil.copy(wheel, destination / wheel.name)
    return sorted(str(path.relative_to(destination.parent)) for path in destination.glob("*.whl"))


def build_bento(labels: dict[str, str]) -> Any:
    """`bentoml build` of bentos/bentofile.yaml, plus the freshly built project wheel."""
    import bentoml
    import yaml

    config = yaml.safe_load((BENTO_DIR / "bentofile.yaml").read_text(encoding="utf-8"))
    config.setdefault("python", {})["wheels"] = build_wheel(BENTO_DIR / "wheels")
    config["labels"] = {**config.get("labels", {}), **labels}
    return bentoml.bentos.build(**config, build_ctx=str(BENTO_DIR))


def package(cfg: DictConfig) -> dict[str, Any]:
    reports = Path(cfg.paths.reports)
    gate = read_gate(reports / "gate.json")
    metrics = json.loads((reports / "metrics.json").read_text(encoding="utf-8"))
    model_path = Path(cfg.paths.model)
    model = load_model(model_path)
    golden = load_golden(cfg.paths.golden)
    commit = git_commit()
    model_md5 = file_md5(model_path)
    example_rows = golden.drop(columns=[SLICE_COLUMN]).head(5)
    data_md5 = {name: info["md5"] for name, info in model.metadata.get("data", {}).items()}
    version = register_challenger(
        cfg,
        model_path,
        example_rows.drop(columns=[LABEL_COLUMN]),
        gate,
        {"git_commit": commit, "model_md5": model_md5, **{f"data.{k}.md5": v for k, v in data_md5.items()}},
    )
    context = {
        "model_name": str(cfg.logger.registered_model_name),
        "model_version": version,
        "license": "{{ cookiecutter.license }}",
        "architecture": model.architecture,
        "threshold": model.threshold,
        "git_commit": commit,
        "mlflow_run_id": model.metadata.get("mlflow_run_id") or "n/a",
        "bento_tag": None,
        "data": model.metadata.get("data", {}),
        "train_rows": model.metadata.get("train_rows", 0),
        "val_rows": model.metadata.get("val_rows", 0),
        "train_fraud_rate": model.metadata.get("train_fraud_rate", 0.0),
        "golden_path": cfg.paths.golden,
        "golden_md5": file_md5(cfg.paths.golden),
        "golden_rows": len(golden),
        "golden_slices": ", ".join(f"{k} ({v})" for k, v in golden[SLICE_COLUMN].value_counts().items()),
        "metrics": metrics,
        "gate": gate,
        "environment": model.metadata.get("environment", {}),
        "params_yaml": OmegaConf.to_yaml(cfg).strip(),
    }
    card_md, card_html = render_card(context, Path(cfg.paths.plots))
    (reports / "model_card.md").write_text(card_md, encoding="utf-8")
    (reports / "model_card.html").write_text(card_html, encoding="utf-8")

    example = request_body(example_rows.head(2))
    model_tag = save_bento_model(
        model_path,
        example,
        card_md,
        labels={"registry_version": version, "git_commit": commit[:40]},
        metadata={
            "model_md5": model_md5,
            "registry_version": version,
            "gate_passed": True,
            "metrics": metrics["overall"],
        },
    )
    (BENTO_DIR / SMOKE_FILE).write_text(
        json.dumps(smoke_requests(model, golden, model_tag), indent=1), encoding="utf-8"
    )
    (BENTO_DIR / CARD_FILE).write_text(card_md, encoding="utf-8")
    serve_config = {**OmegaConf.to_container(cfg.serve), "model_tag": model_tag}  # type: ignore[dict-item]
    (BENTO_DIR / SERVE_FILE).write_text(json.dumps(serve_config), encoding="utf-8")
    bento = build_bento({"registry_version": version, "git_commit": commit[:40]})
    result = {
        "bento_tag": str(bento.tag),
        "bento_model_tag": model_tag,
        "model_version": version,
        "model_md5": model_md5,
        "git_commit": commit,
        "gate_passed": True,
    }
    (reports / "package.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
