"""A team's first act: its own table in place of the example, and the pipeline follows it.

A real public dataset of another shape (scikit-learn's bundled breast-cancer set: 30 numeric columns named with
spaces, no id, no time column, no categories, a label the example never had, and one real null put in) is
adopted into a default bake with the project's own tool; then the pipeline, the card and the monitor run on it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import yaml
from conftest import GPU_SKIP_REASONS, assert_tests_passed, bake, run
from sklearn.datasets import load_breast_cancer

PACKAGE = "fraud_detection"
# What the project's test report says of the tests of the example's own columns, once another dataset is adopted.
EXAMPLE_GONE = "the bundled example dataset was replaced by this project's own (conf/dataset/): its tests do not apply"
# The dataset's place: the only files adopting a table may touch (with the DVC pointers of the new data).
DATASET_PLACE = {
    f"src/{PACKAGE}/data/schema.py",
    f"src/{PACKAGE}/data/features.py",
    f"src/{PACKAGE}/data/generate.py",
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

    # What it wrote passes the project's own checks (pre-commit runs these on every commit).
    run([sys.executable, "-m", "ruff", "check", "."], cwd=project_copy)
    run([sys.executable, "-m", "ruff", "format", "--check", "."], cwd=project_copy)
    run([sys.executable, "-m", "mypy", "src", "tools"], cwd=project_copy, timeout=900)

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

    # The project's own fast tier, as `make test` runs it, on the adopted data: no failure, no error; the only
    # skips are the example's own tests (with the reason) and the GPU ones.
    tests = run(["make", "test", f"PYTHON={sys.executable}", "PYTEST_ARGS=-m 'not slow' -q -rs -p no:cacheprovider"],
                cwd=project_copy, timeout=2400)
    assert_tests_passed(tests.stdout, allowed_skips=(*GPU_SKIP_REASONS, EXAMPLE_GONE))
    assert EXAMPLE_GONE in tests.stdout, "the example's tests were not reported as skipped: did they run?"


def test_nothing_outside_the_dataset_place_names_an_example_column(tmp_path: Path) -> None:
    """The engine, the stages, the tools, the config and the workflows of a default bake name none of the
    example's columns: only its schema, features, generator, its dataset config and its data tool do."""
    project = bake(tmp_path)
    schema = (project / "src" / PACKAGE / "data" / "schema.py").read_text(encoding="utf-8")
    row = schema[schema.index("class RowSchema") : schema.index("class GoldenSchema")]  # not the golden's slice
    columns = re.findall(r"^    (\w+): Series\[", row, flags=re.MULTILINE)
    assert len(columns) >= 10, columns  # the example's columns, read from its own schema
    place = {
        *(f"src/{PACKAGE}/data/{name}.py" for name in ("schema", "features", "generate")),
        "conf/dataset/transactions.yaml",
        "tools/data_version.py",  # the example's data tool: refuses once another dataset is adopted
        "params.yaml",  # composed from conf/, the dataset's config included
    }
    searched = [
        path
        for folder in ("src", "pipelines", "tools", "conf", "bentos", ".github")
        for path in (project / folder).rglob("*")
        if path.is_file() and path.suffix in (".py", ".yaml", ".yml", ".j2") and "__pycache__" not in path.parts
    ] + [project / "dvc.yaml", project / "Makefile"]
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, columns)) + r")\b")
    found = [
        f"{path.relative_to(project)}:{number}: {line.strip()}"
        for path in searched
        if str(path.relative_to(project)) not in place
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "the example's columns named outside the dataset's place:\n" + "\n".join(found)


def test_every_install_of_the_project_the_readme_and_makefile_give_is_pinned(tmp_path: Path) -> None:
    """An unconstrained `pip install -e '.[dev]'` backtracks for many minutes over this dependency set: the baked
    README, Makefile and CI setup offer only the install pinned by constraints.txt."""
    project = bake(tmp_path)
    files = [project / "README.md", project / "Makefile", project / ".github" / "actions" / "setup" / "action.yml"]
    installs = [
        (path.name, line.strip())
        for path in files
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.search(r"pip install\b.*\s-e\s", line)
    ]
    assert len(installs) >= 3, installs  # the README's setup, make setup, CI's setup action
    unpinned = [(name, line) for name, line in installs if "-c constraints.txt" not in line]
    assert not unpinned, f"installs of the project without constraints.txt: {unpinned}"
