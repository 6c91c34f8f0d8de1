"""tools/adopt_data.py: a table of another shape becomes the project's dataset; a bad argument writes nothing."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import PROJECT, _copy_ignore, run

TOOL = "tools/adopt_data.py"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of this project (no git, no DVC: the tool runs with --no-dvc)."""
    copy = tmp_path / PROJECT.name
    shutil.copytree(PROJECT, copy, ignore=_copy_ignore, symlinks=True)
    return copy


def table(rows: int = 400, seed: int = 3) -> pd.DataFrame:
    """Another shape than the example's: other names (spaces, capitals), a time column, a real null, text labels."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=rows)
    frame = pd.DataFrame(
        {
            "Customer ID": [f"c{i:05d}" for i in rng.permutation(rows)],
            "signed up": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 10**7, rows)), "s"),
            "Monthly Spend": np.round(50 + 20 * risk + rng.normal(size=rows), 2),
            "tenure months": rng.integers(0, 60, rows),
            "has contract": rng.random(rows) < 0.5,
            "plan": rng.choice(["basic", "plus", "pro"], rows),
            "churned": np.where(risk + rng.normal(scale=0.5, size=rows) > 0.8, "yes", "no"),
        }
    )
    frame.loc[7, "Monthly Spend"] = np.nan  # a real null
    return frame


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with a digest of its bytes: what 'nothing written' is checked against."""
    return {
        str(path.relative_to(root)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def adopt(project: Path, *args: str) -> tuple[int, str, str]:
    result = run([sys.executable, TOOL, *args, "--no-dvc"], project, check=False)
    return result.returncode, result.stdout, result.stderr


def test_a_table_of_another_shape_is_adopted_and_validates(project: Path, tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    table().to_csv(source, index=False)
    old_schema = (project / "src" / "{{ cookiecutter.package_name }}" / "data" / "schema.py").read_bytes()
    earlier_backups = set((project / ".adopt-backup").rglob("schema.py"))  # a project that adopted before

    code, out, err = adopt(
        project, str(source), "--label", "churned", "--positive", "yes", "--id", "Customer ID", "--time", "signed up"
    )

    assert code == 0, out + err
    assert "review by hand:" in out
    config = yaml.safe_load((project / "conf" / "dataset" / "customers.yaml").read_text())
    assert config["response"] == {"score": "score", "decision": "decision"} and config["slices"] == ["slice=sample"]
    assert config["source"]["columns"]["monthly_spend"] == "Monthly Spend"
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["dataset"]["name"] == "customers" and params["paths"]["raw"] == "data/raw/customers.parquet"
    raw, golden = (pd.read_parquet(project / params["paths"][key]) for key in ("raw", "golden"))
    assert len(raw) + len(golden) == 400 and set(raw["customer_id"]).isdisjoint(golden["customer_id"])
    assert golden["signed_up"].min() > raw["signed_up"].max()  # the golden set is the latest rows
    assert set(raw["churned"]) == {0, 1}
    assert raw["monthly_spend"].isna().sum() + golden["monthly_spend"].isna().sum() == 1  # the null is kept
    backups = list(set((project / ".adopt-backup").rglob("schema.py")) - earlier_backups)
    assert len(backups) == 1 and backups[0].read_bytes() == old_schema  # what it replaced is kept

    # The generated schema and features are the project's now: the validate stage reads the adopted file.
    result = run([sys.executable, "pipelines/validate.py"], project)
    assert "validation PASSED" in result.stdout and "0 quarantined" in result.stdout, result.stdout


def test_without_an_id_or_time_column_an_id_is_made_and_the_split_is_a_seeded_hash(
    project: Path, tmp_path: Path
) -> None:
    source = tmp_path / "plain.parquet"
    plain = table().drop(columns=["Customer ID", "signed up"])
    plain.assign(churned=(plain["churned"] == "yes").astype(int)).to_parquet(source)

    code, out, err = adopt(project, str(source), "--label", "churned", "--name", "plain")

    assert code == 0, out + err
    raw = pd.read_parquet(project / "data" / "raw" / "plain.parquet")
    golden = pd.read_parquet(project / "data" / "golden" / "plain.parquet")
    assert raw["row_id"].str.startswith("plain-").all() and golden["row_id"].is_unique
    assert 0.1 < len(golden) / 400 < 0.3  # --golden-share 0.2 by a hash of the id
    assert "(made: the file has none)" in out


def bad_tables(tmp_path: Path) -> dict[str, Path]:
    good = table()
    files = {
        "good": good,
        "three_labels": good.assign(churned=np.resize(["yes", "no", "maybe"], len(good))),
        "null_label": good.assign(churned=good["churned"].where(good.index != 3)),
        "empty": good.head(0),
        "duplicate_ids": good.assign(**{"Customer ID": "same"}),
        "one_class": good.assign(churned="yes"),
        # Both classes, but every positive among the earliest rows: the golden set (the latest) has none.
        "early_positives": good.assign(churned=["yes"] * 10 + ["no"] * (len(good) - 10)),
    }
    paths = {}
    for name, frame in files.items():
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    (tmp_path / "notes.txt.gz").write_bytes(b"\x1f\x8b")
    paths["unsupported"] = tmp_path / "notes.txt.gz"
    return paths


@pytest.mark.parametrize(
    ("case", "arguments", "message"),
    [
        ("missing file", ["{missing}", "--label", "churned"], "no such file"),
        ("unsupported", ["{unsupported}", "--label", "churned"], "expected a .csv or .parquet file"),
        ("unknown label", ["{good}", "--label", "nope", "--positive", "yes"], "--label 'nope': no such column"),
        ("unknown id", ["{good}", "--label", "churned", "--positive", "yes", "--id", "nope"], "--id 'nope': no such"),
        ("three labels", ["{three_labels}", "--label", "churned"], "only binary labels are supported"),
        ("null label", ["{null_label}", "--label", "churned", "--positive", "yes"], "rows have no label"),
        ("empty file", ["{empty}", "--label", "churned", "--positive", "yes"], "the file has no rows"),
        ("no positive", ["{good}", "--label", "churned"], "name the positive one with --positive"),
        ("bad positive", ["{good}", "--label", "churned", "--positive", "maybe"], "--positive 'maybe' is not a value"),
        ("not a key", ["{duplicate_ids}", "--label", "churned", "--positive", "yes", "--id", "Customer ID"], "a key"),
        ("one class", ["{one_class}", "--label", "churned", "--positive", "yes"], "one distinct value"),
        (
            "skewed split",
            ["{early_positives}", "--label", "churned", "--positive", "yes", "--time", "signed up"],
            "the golden split (80 rows) holds one class only",
        ),
        ("bad share", ["{good}", "--label", "churned", "--positive", "yes", "--golden-share", "1.5"], "--golden-share"),
        ("no label option", ["{good}"], "the following arguments are required: --label"),
        ("time not a time", ["{good}", "--label", "churned", "--positive", "yes", "--time", "plan"], "--time 'plan'"),
    ],
)
def test_a_bad_argument_is_one_line_exit_2_and_nothing_written(
    project: Path, tmp_path: Path, case: str, arguments: list[str], message: str
) -> None:
    paths = {name: str(path) for name, path in bad_tables(tmp_path).items()}
    paths["missing"] = str(tmp_path / "missing.csv")
    before = snapshot(project)

    code, out, err = adopt(project, *(argument.format(**paths) for argument in arguments))

    assert code == 2, f"{case}: {out}{err}"
    assert err.startswith("ERROR: ") and err.count("\n") == 1 and message in err, f"{case}: {err!r}"
    assert snapshot(project) == before, f"{case}: files were written"
