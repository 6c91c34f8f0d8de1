"""A team's first act: its own table in place of the example, and the pipeline follows it.

A real public dataset of another shape (scikit-learn's bundled breast-cancer set: 30 numeric columns named with
spaces, no id, no time column, no categories, a label the example never had, and one real null put in) is
adopted into a default bake with the project's own tool; then the pipeline, the card and the monitor run on it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml
from conftest import run
from sklearn.datasets import load_breast_cancer

PACKAGE = "fraud_detection"
# The dataset's place: the only files adopting a table may touch (with the DVC pointers of the new data).
DATASET_PLACE = {
    f"src/{PACKAGE}/data/schema.py",
    f"src/{PACKAGE}/data/features.py",
    "conf/dataset/cancer.yaml",
    "conf/config.yaml",
    "params.yaml",
    "data/raw/cancer.parquet.dvc",
    "data/golden/cancer.parquet.dvc",
    "data/raw/.gitignore",
    "data/golden/.gitignore",
}


def test_a_second_real_dataset_goes_through_the_pipeline_card_and_monitor(project_copy: Path, tmp_path: Path) -> None:
    # The example's first model, committed on main as a user does after the first `dvc repro`.
    run(["dvc", "repro"], cwd=project_copy, timeout=1800)
    run(["git", "add", "-A"], cwd=project_copy)
    run(["git", "commit", "-qm", "first model"], cwd=project_copy)
    frame = load_breast_cancer(as_frame=True).frame  # target: 0 malignant, 1 benign
    frame.loc[3, "mean texture"] = np.nan
    source = tmp_path / "cancer.csv"
    frame.to_csv(source, index=False)

    adopted = run([sys.executable, "tools/adopt_data.py", str(source), "--label", "target", "--positive", "0",
                   "--name", "cancer"], cwd=project_copy)

    assert "review by hand:" in adopted.stdout, adopted.stdout
    changed = run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=project_copy).stdout.splitlines()
    touched = {line[3:].strip().strip('"') for line in changed}
    assert touched <= DATASET_PLACE, f"adopting touched more than the dataset's place: {touched - DATASET_PLACE}"

    repro = run(["dvc", "repro"], cwd=project_copy, timeout=1800)
    for stage in ("validate", "train", "evaluate", "gate", "package"):
        assert f"Running stage '{stage}'" in repro.stdout, repro.stdout
    metrics = json.loads((project_copy / "reports" / "metrics.json").read_text())
    assert metrics["overall"]["roc_auc"] > 0.9, metrics["overall"]
    gate = json.loads((project_copy / "reports" / "gate.json").read_text())
    assert gate["passed"], gate
    # The example's champion (main's model, trained on the example's features) is not compared: it is reported.
    comparable = next(check for check in gate["checks"] if check["name"] == "champion_comparable")
    assert not comparable["judged"] and "another dataset or feature set" in comparable["detail"], comparable
    card = (project_copy / "reports" / "model_card.md").read_text()
    task = yaml.safe_load((project_copy / "conf" / "dataset" / "cancer.yaml").read_text())["card"]["task"]
    assert f"**Task:** {task}." in card and "card transactions" not in card, card[:2000]
    assert "trained on another dataset or feature set" in card

    logs = tmp_path / "logs"
    run([sys.executable, "tools/monitor.py", "--simulate", str(logs), "--rows", "2500", "--drift", "1.0"],
        cwd=project_copy)
    judged = run([sys.executable, "tools/monitor.py", "--logs", str(logs)], cwd=project_copy, check=False)
    assert judged.returncode == 3, judged.stdout + judged.stderr  # shifted traffic: drift
    report = json.loads((project_copy / "reports" / "drift.json").read_text())
    assert report["drift"] and "mean_radius" in report["features"], report
