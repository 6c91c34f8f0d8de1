"""Closing the loop: the prediction log, drift of logged traffic, and the data-version branch drift opens."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import yaml
from conftest import PROJECT, run
from support.tiny import tiny_model

from {{ cookiecutter.package_name }}.data import generate, sample_rows
from {{ cookiecutter.package_name }}.data.schema import ID_COLUMN, LABEL_COLUMN
from {{ cookiecutter.package_name }}.data.schema import TIME_COLUMN as EVENT_TIME
from {{ cookiecutter.package_name }}.monitoring.drift import NAMED_UNREADABLE, Limits, drift_report, read_traffic
from {{ cookiecutter.package_name }}.monitoring.predictions import PredictionLog, resolve_log_dir
from {{ cookiecutter.package_name }}.monitoring.record import (
    FEATURE_COLUMNS,
    MODEL_COLUMN,
    SCORE_COLUMN,
    TIME_COLUMN,
    PredictionLogSettings,
)
from {{ cookiecutter.package_name }}.release.package import request_body
from {{ cookiecutter.package_name }}.serving.api import ServeSettings, predict_rows, request_model, shape_of
from {{ cookiecutter.package_name }}.serving.service import prediction_log

CONF = yaml.safe_load((PROJECT / "conf" / "monitor" / "default.yaml").read_text(encoding="utf-8"))
SHAPE = shape_of(yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))["dataset"]["response"])
LIMITS = Limits(CONF["psi_limit"], CONF["score_psi_limit"], CONF["bins"], CONF["min_rows"])
# What the generator's `drift` knob moves (amount, merchant mix, velocity) and what it leaves alone.
SHIFTED = {"amount", "merchant_category", "txn_count_1h"}
UNMOVED = {"card_country", "account_age_days", "event_hour"}
IDENTITY = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "t@example.com"}
IDENTITY |= {"GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@example.com"}


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return sample_rows(20_000, seed=1)


def traffic(drift: float, rows: int = 3000) -> pd.DataFrame:
    """Unlabelled rows of the same population; a shifted one (drift > 0) is the example generator's knob."""
    if drift == 0:
        return sample_rows(rows, seed=5).drop(columns=[LABEL_COLUMN])
    return generate.generate_transactions(rows, seed=5, drift=drift).drop(columns=[LABEL_COLUMN])


def test_unchanged_traffic_is_not_flagged(reference: pd.DataFrame) -> None:
    model = tiny_model(reference)
    live = traffic(0.0).assign(**{SCORE_COLUMN: model.predict_proba(traffic(0.0))})
    report = drift_report(reference, live, LIMITS, model.predict_proba(reference))
    assert report["enough_rows"] and not report["drift"], report
    assert report["flagged"] == [] and report["score"] is not None and not report["score"]["drifted"]
    assert all(found["value"] < found["limit"] for found in report["features"].values())


@pytest.mark.example  # which features the example generator's drift moves, and which it leaves alone
def test_drifted_traffic_flags_the_shifted_features(reference: pd.DataFrame) -> None:
    model = tiny_model(reference)
    live = traffic(0.5).assign(**{SCORE_COLUMN: model.predict_proba(traffic(0.5))})
    report = drift_report(reference, live, LIMITS, model.predict_proba(reference))
    assert report["drift"], report
    assert set(report["flagged"]) >= SHIFTED and not UNMOVED & set(report["flagged"]), report["flagged"]
    for name in report["flagged"]:
        assert report["features"][name]["value"] > report["features"][name]["limit"] == CONF["psi_limit"]


def test_too_little_traffic_gives_no_verdict(reference: pd.DataFrame) -> None:
    report = drift_report(reference, traffic(0.0, rows=CONF["min_rows"] - 1), LIMITS)
    assert not report["enough_rows"] and not report["drift"] and report["features"] == {}


def read_lines(directory: Path, expected: int, timeout: float = 15.0) -> list[dict[str, object]]:
    """The log's lines once the writer thread has written `expected` of them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            json.loads(line) for path in directory.glob("*/data/data.*.log*") for line in path.read_text().splitlines()
        ]
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_the_log_holds_inputs_score_model_and_time_only(tmp_path: Path, reference: pd.DataFrame) -> None:
    """Scored through the service's code path (`predict_rows` with its hook): one line per row, nothing more."""
    model = tiny_model(reference)
    rows = request_model(100).model_validate_json(json.dumps(request_body(traffic(0.0, rows=40)))).transactions
    hook = PredictionLog(PredictionLogSettings(enabled=True, dir=str(tmp_path), keep_days=1), "card:v7", "test-log")
    before = dt.datetime.now(dt.UTC)
    answer = predict_rows(model, rows, "card:v7", SHAPE, hook)
    lines = read_lines(tmp_path, 40)
    assert len(lines) == 40
    sent = traffic(0.0, rows=40)
    for line, row, prediction in zip(lines, sent.to_dict("records"), answer.predictions, strict=True):
        assert set(line) == {*FEATURE_COLUMNS, SCORE_COLUMN, MODEL_COLUMN, TIME_COLUMN}
        assert line[SCORE_COLUMN] == getattr(prediction, SHAPE.names.score) and line[MODEL_COLUMN] == "card:v7"
        assert before <= dt.datetime.fromisoformat(str(line[TIME_COLUMN])) <= dt.datetime.now(dt.UTC)
        for name in FEATURE_COLUMNS:
            if name == EVENT_TIME:
                assert pd.Timestamp(str(line[name])) == row[name]
            else:  # a missing value is logged missing
                assert line[name] == row[name] or (pd.isna(line[name]) and pd.isna(row[name])), name
    text = "".join(path.read_text() for path in tmp_path.glob("*/data/data.*.log*"))
    assert not any(tid in text for tid in sent[ID_COLUMN]), "a transaction id reached the log"


def test_a_relative_log_dir_is_under_the_folder_the_server_was_started_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BentoML runs the service inside the bento's folder: the shell's $PWD, not the cwd, is the anchor."""
    started, bento = tmp_path / "project", tmp_path / "store" / "bento" / "src"
    started.mkdir()
    bento.mkdir(parents=True)
    monkeypatch.chdir(bento)
    monkeypatch.setenv("PWD", str(started))
    assert resolve_log_dir("logs/predictions") == started / "logs" / "predictions"
    assert resolve_log_dir(str(tmp_path / "abs")) == tmp_path / "abs"
    settings = PredictionLogSettings(enabled=True, dir="logs/predictions", keep_days=1)
    assert PredictionLog(settings, "m:1").options["log_path"] == str(started / "logs" / "predictions")
    monkeypatch.delenv("PWD")
    assert resolve_log_dir("logs") == bento / "logs"  # no shell: the working directory


def test_the_serve_config_turns_the_log_on_and_off() -> None:
    settings = yaml.safe_load((PROJECT / "conf" / "serve" / "default.yaml").read_text(encoding="utf-8"))
    on = ServeSettings.model_validate({**settings, "model_tag": "m:1", "response": SHAPE.names.model_dump()})
    assert on.prediction_log.enabled, "the committed serve config logs predictions"
    assert isinstance(prediction_log(on, "m:1"), PredictionLog)
    off = on.model_copy(update={"prediction_log": on.prediction_log.model_copy(update={"enabled": False})})
    assert prediction_log(off, "m:1") is None


def log_lines(rows: int, when: dt.datetime, seed: int = 5) -> bytes:
    """`rows` sample rows as the prediction log holds them: one JSON object per line."""
    frame = sample_rows(rows, seed=seed).drop(columns=[LABEL_COLUMN, ID_COLUMN])
    frame = frame.assign(**{SCORE_COLUMN: 0.01, MODEL_COLUMN: "m:1", TIME_COLUMN: when.isoformat()})
    for name in frame.select_dtypes("datetime").columns:  # the logged event time, as the service writes it
        frame[name] = frame[name].dt.strftime("%Y-%m-%dT%H:%M:%S")
    return frame.to_json(orient="records", lines=True).encode("utf-8")


def write_log(directory: Path, worker: int, data: bytes) -> Path:
    path = directory / "predictions" / "data" / f"data.{worker}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_unreadable_lines_are_skipped_counted_and_named(tmp_path: Path) -> None:
    """A killed writer's torn last line, a non-UTF-8 file, a line without the logged columns: each is counted
    and named by file and line; every readable row is read; the list is bounded, the count is not."""
    now = dt.datetime.now(dt.UTC)
    good = log_lines(30, now - dt.timedelta(minutes=5))
    torn = write_log(tmp_path, 1, good + good.splitlines(keepends=True)[0][:40])  # no newline: killed mid-line
    binary = write_log(tmp_path, 2, b"\xff\xfe\x00garbage\n" * (NAMED_UNREADABLE + 5))
    odd = write_log(tmp_path, 3, good + b'{"x": 1.0}\n[1, 2]\n')
    traffic, unreadable = read_traffic([torn, binary, odd], now - dt.timedelta(days=1), now)
    assert len(traffic) == 60 and set(traffic[SCORE_COLUMN]) == {0.01}
    assert unreadable.lines == 1 + NAMED_UNREADABLE + 5 + 2 and unreadable.read == 60 + unreadable.lines
    assert len(unreadable.named) == NAMED_UNREADABLE
    assert unreadable.named[0] == {"file": str(torn), "line": 31, "reason": "not JSON: torn or garbled"}
    assert {(line["file"], line["reason"]) for line in unreadable.named[1:]} == {(str(binary), "not UTF-8")}
    assert [line["line"] for line in unreadable.named[1:4]] == [1, 2, 3]
    report = unreadable.as_dict(0.01)
    assert report["exceeded"] and report["share"] == round(unreadable.lines / unreadable.read, 6)
    _, lines = read_traffic([odd], now - dt.timedelta(days=1), now)
    assert [(line["line"], line["reason"]) for line in lines.named] == [
        (31, "a logged column is missing or empty"),
        (32, "not a JSON object"),
    ]


def load_monitor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("monitor", PROJECT / "tools" / "monitor.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def monitor_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder the monitor can run in: this project's params.yaml, a small training set, no model; cwd."""
    shutil.copy(PROJECT / "params.yaml", tmp_path / "params.yaml")
    validated = tmp_path / "data" / "validated" / "train.parquet"
    validated.parent.mkdir(parents=True)
    sample_rows(5000, seed=1).to_parquet(validated)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def monitor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = load_monitor().main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "ERROR: --days must be a positive number of days (got 0.0)"),
        (["--days", "-3"], "ERROR: --days must be a positive number of days (got -3.0)"),
        (["--simulate", "demo", "--rows", "-5"], "ERROR: --rows must be a whole number of rows >= 1 (got -5)"),
        (["--simulate", "demo", "--chunk", "0"], "ERROR: --chunk must be a whole number of rows >= 1 (got 0)"),
    ],
    ids=["days-0", "days-negative", "rows-negative", "chunk-0"],
)
def test_the_monitor_refuses_a_window_or_row_count_that_cannot_be(
    monitor_project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """One line and exit 2, before anything is read or written (not "no verdict" day after day)."""
    write_log(monitor_project / "logs", 1, log_lines(CONF["min_rows"] + 100, dt.datetime.now(dt.UTC)))
    code, _, err = monitor(capsys, "--logs", "logs", *args)
    assert (code, err) == (2, message + "\n")
    assert not (monitor_project / "reports").exists() and not (monitor_project / "demo").exists()


def test_the_monitor_skips_a_torn_line_and_stops_on_a_broken_log(
    monitor_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A torn last line is skipped and named, the verdict stands; past monitor.max_unreadable_share, exit 2."""
    rows, logs = CONF["min_rows"] + 100, monitor_project / "logs"
    good = log_lines(rows, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    torn = write_log(logs, 1, good + good[:25])
    code, out, err = monitor(capsys, "--logs", "logs")
    assert code == 0 and err == "" and "no drift" in out and "skipped 1 unreadable" in out, out + err
    report = json.loads((monitor_project / "reports" / "drift.json").read_text())
    assert report["rows"] == rows and not report["drift"] and report["features"]
    assert report["unreadable"]["lines"] == 1 and report["unreadable"]["of"] == rows + 1
    assert report["unreadable"]["named"] == [
        {"file": str(torn.relative_to(monitor_project)), "line": rows + 1, "reason": "not JSON: torn or garbled"}
    ]

    limit = CONF["max_unreadable_share"]
    broken = int(limit * rows) + 10  # just past the share allowed
    write_log(logs, 2, b"\xff" * 8 + b"\n" + b"\x00\xfe\n" * (broken - 1))
    code, out, err = monitor(capsys, "--logs", "logs")
    assert code == 2 and len(err.splitlines()) == 1, out + err
    assert err.startswith(f"ERROR: {broken + 1} of {rows + broken + 1} log lines are unreadable"), err
    assert f"no verdict; the first {torn.relative_to(monitor_project)}:{rows + 1} (not JSON: torn or garbled)" in err
    report = json.loads((monitor_project / "reports" / "drift.json").read_text())
    assert report["unreadable"]["exceeded"] and report["unreadable"]["max_share"] == limit
    assert not report["drift"] and report["features"] == {} and report["score"] is None


def test_a_log_file_that_cannot_be_read_is_named_and_stops_the_verdict(
    monitor_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dangling link or a folder where a log file should be: its share of the log is unknown, so no verdict."""
    logs = monitor_project / "logs"
    write_log(logs, 1, log_lines(CONF["min_rows"] + 100, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    (logs / "predictions" / "data" / "data.2.log").symlink_to("gone.log")
    code, out, err = monitor(capsys, "--logs", "logs")
    assert code == 2 and len(err.splitlines()) == 1, out + err
    gone = Path("logs/predictions/data/data.2.log")
    assert err == f"ERROR: 1 prediction log file(s) cannot be read: no verdict; the first {gone} " + (
        "(cannot be read: No such file or directory), all named in reports/drift.json\n"
    )
    report = json.loads((monitor_project / "reports" / "drift.json").read_text())
    assert report["unreadable"]["files"] == 1 and report["unreadable"]["exceeded"] and not report["drift"]
    assert report["unreadable"]["named"][0] == {
        "file": str(gone),
        "line": None,
        "reason": "cannot be read: No such file or directory",
    }
    assert "Skipped 1 unreadable log files" in (monitor_project / "reports" / "drift.html").read_text()


def log_traffic(workspace: Path, directory: str, drift: float) -> None:
    """Generated traffic scored by the workspace's model and logged as the service logs it."""
    rows = str(CONF["min_rows"] + 500)
    run([sys.executable, "tools/monitor.py", "--simulate", directory, "--rows", rows, "--drift", str(drift)], workspace)
    assert len(read_lines(workspace / directory, int(rows), timeout=0)) == int(rows)


def git(workspace: Path, *args: str) -> str:
    return run(["git", *args], workspace).stdout.strip()


@pytest.mark.slow  # a project copy with DVC, validation and three tool runs: over a minute on two shared cores
@pytest.mark.example  # --open-branch makes the new data version with the example's tools/data_version.py
def test_the_monitor_judges_the_log_and_opens_a_data_version_branch_on_drift(workspace: Path) -> None:
    run([sys.executable, "-m", "dvc", "repro", "-q", "validate"], workspace)
    run(["git", "commit", "-qm", "validate"], workspace, env=IDENTITY)
    validated = pd.read_parquet(workspace / "data" / "validated" / "train.parquet")
    tiny_model(validated).save(workspace / "models" / "model.pt")
    log_traffic(workspace, "calm", 0.0)
    log_traffic(workspace, "shifted", 0.5)
    monitor = [sys.executable, "tools/monitor.py", "--open-branch", "--logs"]
    pointer = "data/raw/transactions.parquet.dvc"
    before = (workspace / pointer).read_text()

    nowhere = run([*monitor, "nowhere"], workspace, check=False)
    assert nowhere.returncode == 2 and "no prediction log under nowhere" in nowhere.stderr

    calm = run([*monitor, "calm"], workspace, check=False)
    assert calm.returncode == 0, calm.stdout + calm.stderr
    report = json.loads((workspace / "reports" / "drift.json").read_text())
    assert not report["drift"] and report["rows"] == CONF["min_rows"] + 500
    assert git(workspace, "branch", "--show-current") == "main"

    shifted = run([*monitor, "shifted"], workspace, check=False, env=IDENTITY)
    assert shifted.returncode == 3, shifted.stdout + shifted.stderr
    report = json.loads((workspace / "reports" / "drift.json").read_text())
    assert report["drift"] and set(report["flagged"]) >= SHIFTED, report
    assert {"start", "end"} <= set(report["window"]) and report["score"]["limit"] == CONF["score_psi_limit"]
    page = (workspace / "reports" / "drift.html").read_text()
    assert page.count("<img ") == len(report["flagged"]) + report["score_drifted"]
    assert all(f"<h3>{name}</h3>" in page for name in report["flagged"])

    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert git(workspace, "branch", "--show-current") == f"retrain/drift-{today}"
    assert git(workspace, "diff", "--name-only", "main", "HEAD").splitlines() == [pointer]
    assert (workspace / pointer).read_text() != before
    assert "drift=0.5" in git(workspace, "log", "-1", "--format=%s")
