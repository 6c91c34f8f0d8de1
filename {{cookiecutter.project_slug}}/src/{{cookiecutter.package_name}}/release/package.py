"""package(cfg): approved model -> MLflow `challenger` -> BentoML model + card -> `bentoml build`."""

from __future__ import annotations

import json
import math
import os
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
from ..files import read_document, write_atomically
from ..lineage import environment, file_md5, git_commit
from ..serving import BENTO_MODEL_LABEL
from ..serving.api import (
    EXAMPLE_FILE,
    MODEL_FILE,
    MODEL_NAME,
    SERVE_FILE,
    ResponseShape,
    score_body,
    shape_of,
)
from ..training.artifact import ScoringModel, load_model
from ..training.tracking import close_stale_runs
from .card import render_card
from .journal import Journal, clear_journal, project_identity, read_journal, write_journal
from .registry import PACKAGE_JOURNAL, register_challenger, training_run, version_of_bento

BENTO_DIR = Path("bentos")
# Files the package stage writes into the bento build context (git-ignored there).
SMOKE_FILE, CARD_FILE = "smoke_requests.json", "model_card.md"
SMOKE_ROWS = 8


class PackageError(PipelineError):
    pass


def read_gate(path: Path) -> dict[str, Any]:
    """The gate report, refusing anything but a clear pass (the stage may be run on its own)."""
    report = read_document(path, PackageError, "the gate must run (and pass) before packaging")
    if not isinstance(report, dict) or report.get("passed") is not True:
        checks = report.get("checks", []) if isinstance(report, dict) else []
        failed = [c["name"] for c in checks if not c.get("passed")]
        raise PackageError(f"the gate did not pass ({', '.join(failed) or 'no checks'}): nothing is packaged")
    return report


def check_approval(gate: dict[str, Any], files: dict[str, Path]) -> dict[str, str]:
    """The md5 of each file, refusing when it is not the file the gate approved (`<name>_md5` in gate.json)."""
    approved = gate.get("candidate") or {}
    hashes = {name: file_md5(path) for name, path in files.items()}
    stale = [
        f"{path} has md5 {hashes[name]}, the gate approved {approved.get(f'{name}_md5')!r}"
        for name, path in files.items()
        if approved.get(f"{name}_md5") != hashes[name]
    ]
    if stale:
        raise PackageError(
            "reports/gate.json approved other files than the ones to package: "
            + "; ".join(stale)
            + ". Re-run the gate (`dvc repro gate`); nothing is packaged"
        )
    return hashes


def request_body(rows: pd.DataFrame) -> dict[str, Any]:
    """A POST /predict body for `rows` (JSON-ready: timestamps as ISO strings, a missing value as null)."""
    records = rows.drop(columns=[LABEL_COLUMN, SLICE_COLUMN], errors="ignore").to_dict(orient="records")
    return {"transactions": [{k: _json_value(v) for k, v in r.items()} for r in records]}


def _json_value(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None  # JSON has no NaN: a null the schema allows is how a request says "missing"
    return value


def served_shape(cfg: DictConfig) -> ResponseShape:
    """The served response's shape from conf/dataset `response`; bad names stop the stage before it creates anything."""
    try:
        return shape_of(OmegaConf.to_container(cfg.dataset.response))  # type: ignore[arg-type]
    except ValueError as error:
        raise PackageError(str(error)) from None


def smoke_requests(model: ScoringModel, golden: pd.DataFrame, model_tag: str, shape: ResponseShape) -> dict[str, Any]:
    """Golden rows with the answers this model must give: what a new slot is checked with before it takes traffic."""
    rows = golden.groupby(SLICE_COLUMN, group_keys=False).head(2).head(SMOKE_ROWS)
    body = request_body(rows)
    expected = score_body(model, body, model_tag, shape).model_dump()
    return {"atol": 1e-6, "requests": [{"path": "/predict", "body": body, "expected": expected}]}


def save_bento_model(
    tag: str, model_path: Path, example: dict[str, Any], card_md: str, labels: dict[str, str], metadata: dict[str, Any]
) -> str:
    import bentoml

    with bentoml.models.create(tag, labels=labels, metadata=metadata) as bento_model:
        shutil.copy(model_path, bento_model.path_of(MODEL_FILE))
        Path(bento_model.path_of(EXAMPLE_FILE)).write_text(json.dumps(example), encoding="utf-8")
        Path(bento_model.path_of(CARD_FILE)).write_text(card_md, encoding="utf-8")
    return str(bento_model.tag)


def remove_from_store(tag: str) -> bool:
    """Delete one bento or bento model by its exact tag, a torn save (a folder BentoML cannot load) included.

    BentoML copies an item into its store file by file. Its own `delete` lists every version of the
    name afterwards and fails on a torn folder another project's killed run may have left, so the folder
    is removed here and `latest` re-pointed the way BentoML does, over the versions it can read.
    """
    from bentoml._internal.configuration.containers import BentoMLContainer  # the store folders: no public API

    name, version = tag.split(":")
    manifest = "model.yaml" if name == MODEL_NAME else "bento.yaml"
    store = BentoMLContainer.model_store_dir.get() if name == MODEL_NAME else BentoMLContainer.bento_store_dir.get()
    folder = Path(store) / name / version
    if not folder.is_dir():
        return False
    shutil.rmtree(folder)
    latest = folder.parent / "latest"
    if latest.exists() and latest.read_text(encoding="utf-8").strip() == version:
        whole = sorted(folder.parent.glob(f"*/{manifest}"), key=lambda path: path.stat().st_mtime)
        if whole:
            latest.write_text(whole[-1].parent.name, encoding="utf-8")
        else:
            latest.unlink()
    return True


def recover(cfg: DictConfig, reports: Path) -> None:
    """Finish the books of a package run that did not finish, from its journal and nothing else.

    A run that registered its version (or wrote its report) finished what others rely on: its items stay.
    Otherwise its RUNNING MLflow run is closed KILLED and exactly the tags its journal names are removed.
    """
    journal = read_journal()
    if journal is None:
        return
    package_report = reports / "package.json"
    reported = json.loads(package_report.read_text(encoding="utf-8")) if package_report.exists() else {}
    if reported.get("bento_tag") == journal.bento_tag or version_of_bento(cfg, journal.bento_tag) is not None:
        print(f"package run {journal.id} was registered before it stopped: its bento {journal.bento_tag} stays")
    else:
        for run_id in close_stale_runs(cfg, PACKAGE_JOURNAL, journal.id):
            print(f"marked MLflow run {run_id}, left running by a killed package run, as KILLED")
        for tag in journal.tags:
            if remove_from_store(tag):
                print(f"removed {tag}, left by an unfinished package run")
    clear_journal()


def build_wheel(destination: Path) -> list[str]:
    """The project's own wheel goes into the bento, so the container runs the same preprocessing code."""
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", scratch, "."],
            check=True,
        )
        destination.mkdir(parents=True, exist_ok=True)
        for wheel in Path(scratch).glob("*.whl"):
            shutil.copy(wheel, destination / wheel.name)
    return sorted(str(path.relative_to(destination.parent)) for path in destination.glob("*.whl"))


def build_bento(tag: str, labels: dict[str, str]) -> Any:
    """`bentoml build` of bentos/bentofile.yaml plus the freshly built project wheel.

    BentoML refuses a wheel whose absolute path has a dot-folder in it (and one outside the working
    directory), so a project under e.g. ~/.work/ could not build in place: the build context (the
    included files and the wheel) is assembled in a scratch folder and built from there.
    """
    import bentoml
    import yaml

    config = yaml.safe_load((BENTO_DIR / "bentofile.yaml").read_text(encoding="utf-8"))
    config["labels"] = {**config.get("labels", {}), **labels}
    with tempfile.TemporaryDirectory(prefix="bento-context-") as scratch:
        context = Path(scratch)
        for pattern in config.get("include", []):
            for path in BENTO_DIR.glob(pattern):
                shutil.copy(path, context / path.relative_to(BENTO_DIR))
        config.setdefault("python", {})["wheels"] = build_wheel(context / "wheels")
        previous = Path.cwd()
        os.chdir(context)
        try:
            return bentoml.bentos.build(**config, version=tag.split(":")[1], build_ctx=str(context))
        finally:
            os.chdir(previous)


def card_context(
    cfg: DictConfig,
    model: ScoringModel,
    golden: pd.DataFrame,
    registered: tuple[str, str] | None,
    gate: dict[str, Any],
    lineage: dict[str, Any],
) -> dict[str, Any]:
    """What the model card says: the model, its data, its lineage (from its training run) and the gate.

    `registered` is (registry version, bento tag), None for the card that goes into the bento: the version
    is registered only once that bento is built.
    """
    return {
        "model_name": str(cfg.logger.registered_model_name),
        "model_version": registered[0] if registered else None,
        "license": "{{ cookiecutter.license }}",
        "architecture": model.architecture,
        "threshold": model.threshold,
        "git_commit": lineage["git_commit"],
        "mlflow_run_id": lineage["mlflow_run_id"],
        "trained_at": lineage["trained_at"],
        "bento_tag": registered[1] if registered else None,
        "data": model.metadata.get("data", {}),
        "train_rows": model.metadata.get("train_rows", 0),
        "val_rows": model.metadata.get("val_rows", 0),
        "train_positive_rate": model.metadata.get("train_positive_rate", 0.0),
        "card": OmegaConf.to_container(cfg.dataset.card),
        "golden_path": cfg.paths.golden,
        "golden_md5": gate["candidate"]["golden_md5"],
        "golden_rows": len(golden),
        "golden_slices": ", ".join(f"{k} ({v})" for k, v in golden[SLICE_COLUMN].value_counts().items()),
        "metrics": json.loads((Path(cfg.paths.reports) / "metrics.json").read_text(encoding="utf-8")),
        "gate": gate,
        "environment": lineage["environment"] or environment(),
        "params_yaml": OmegaConf.to_yaml(cfg).strip(),
    }


def package(cfg: DictConfig) -> dict[str, Any]:
    """Check the approval, journal what will be created, build the bento, register it, then set `challenger` last.

    The registry version is created only once the bento it names is built. A rerun after a kill at
    any point removes what the killed run's journal names, so `challenger` only ever points at a
    version whose bento exists, and nothing another project put in a shared store is touched.
    """
    reports = Path(cfg.paths.reports)
    gate = read_gate(reports / "gate.json")
    model_path = Path(cfg.paths.model)
    hashes = check_approval(gate, {"model": model_path, "golden": Path(cfg.paths.golden)})
    model = load_model(model_path)
    golden = load_golden(cfg.paths.golden)
    shape = served_shape(cfg)
    recover(cfg, reports)  # every input checked: only now may anything be deleted
    lineage = training_run(cfg, hashes["model"])
    commit = git_commit()
    example_rows = golden.drop(columns=[SLICE_COLUMN]).head(5)
    data_md5 = {name: info["md5"] for name, info in model.metadata.get("data", {}).items()}
    journal = Journal.new()
    write_journal(journal)  # before the first item is created: whatever a kill leaves, the journal names
    labels = {
        **project_identity(cfg),
        PACKAGE_JOURNAL: journal.id,
        "model_md5": hashes["model"],
        "git_commit": commit[:40],
    }
    bento_card, _ = render_card(card_context(cfg, model, golden, None, gate, lineage), Path(cfg.paths.plots))
    model_tag = save_bento_model(
        journal.model_tag,
        model_path,
        request_body(example_rows.head(2)),
        bento_card,
        labels=labels,
        metadata={"model_md5": hashes["model"], "gate_passed": True, "metrics": gate["candidate"]["metrics"]},
    )
    (BENTO_DIR / SMOKE_FILE).write_text(
        json.dumps(smoke_requests(model, golden, model_tag, shape), indent=1), encoding="utf-8"
    )
    (BENTO_DIR / CARD_FILE).write_text(bento_card, encoding="utf-8")
    serve_config = {
        **OmegaConf.to_container(cfg.serve),  # type: ignore[dict-item]
        "model_tag": model_tag,
        "response": shape.names.model_dump(),
    }
    (BENTO_DIR / SERVE_FILE).write_text(json.dumps(serve_config), encoding="utf-8")
    bento_tag = str(build_bento(journal.bento_tag, {**labels, BENTO_MODEL_LABEL: model_tag}).tag)
    version = register_challenger(
        cfg,
        model_path,
        example_rows.drop(columns=[LABEL_COLUMN]),
        gate,
        {
            "git_commit": commit,
            "model_md5": hashes["model"],
            "golden_md5": hashes["golden"],
            "train_run_id": lineage["mlflow_run_id"],
            PACKAGE_JOURNAL: journal.id,
            **{f"data.{k}.md5": v for k, v in data_md5.items()},
        },
        bento_tag,
    )
    card_md, card_html = render_card(
        card_context(cfg, model, golden, (version, bento_tag), gate, lineage), Path(cfg.paths.plots)
    )
    result = {
        "bento_tag": bento_tag,
        "bento_model_tag": model_tag,
        "model_version": version,
        "model_md5": hashes["model"],
        "golden_md5": hashes["golden"],
        "git_commit": commit,
        "mlflow_run_id": lineage["mlflow_run_id"],
        "trained_at": lineage["trained_at"],
        "gate_passed": True,
    }
    write_atomically(reports / "model_card.md", card_md)
    write_atomically(reports / "model_card.html", card_html)
    write_atomically(reports / "package.json", json.dumps(result, indent=2) + "\n")
    clear_journal()
    return result
