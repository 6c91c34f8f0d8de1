"""Drift monitor: the served model's logged traffic against the data it was trained on.

    python tools/monitor.py                                  # judge the last window_days of the log
    python tools/monitor.py --logs DIR --days 1              # another log dir (default conf/serve's), window
    python tools/monitor.py --open-branch                    # on drift: a new data version on retrain/drift-<date>
    python tools/monitor.py --send-to http://127.0.0.1:3000 --rows 5000 --drift 0.5   # demo traffic
    python tools/monitor.py --simulate logs/predictions --rows 5000 --drift 0.5      # ...without a server

Writes reports/drift.json (the verdict, every feature's PSI and limit, the window and row counts,
the log lines skipped as unreadable) and reports/drift.html (one plot per drifted feature). Exit
status: 0 no drift (or too little traffic for a verdict), 3 drift, 2 the monitor could not run or
refused its input (one `ERROR:` line), among them a log with more unreadable lines than
monitor.max_unreadable_share allows. Limits: conf/monitor.

The reference is the training data and model of this checkout (paths.validated and paths.model
as dvc.lock pins them; `dvc pull` first): run it on the commit whose model is live.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from {{ cookiecutter.package_name }}.data.schema import ID_COLUMN, LABEL_COLUMN, TIME_COLUMN
from {{ cookiecutter.package_name }}.files import write_atomically, write_json
from {{ cookiecutter.package_name }}.monitoring.drift import (
    Limits,
    drift_report,
    log_files,
    read_traffic,
    skipped,
    where,
)
from {{ cookiecutter.package_name }}.monitoring.predictions import PredictionLog, resolve_log_dir
from {{ cookiecutter.package_name }}.monitoring.record import PredictionLogSettings
from {{ cookiecutter.package_name }}.monitoring.report import html_report
from {{ cookiecutter.package_name }}.release.package import request_body
from {{ cookiecutter.package_name }}.serving.api import predict_rows, request_model, shape_of

DRIFT_EXIT = 3
REFUSED_EXIT = 2  # the project's stage-error status: the monitor could not run or refused its input


class Refused(Exception):
    """An input the monitor will not run on; its message is the one line the user sees."""


def demo_frame(cfg: DictConfig, rows: int, drift: float, seed: int) -> pd.DataFrame:
    """`rows` rows drawn from this checkout's validated data (the model's own population), without the label.

    `drift` > 0 moves the population: every number by `drift` of its standard deviation (kept inside the
    values seen, so every row stays valid) and, for a `drift / 2` share of rows, every closed set of values
    to a value drawn evenly from those seen. Generic: it names no column, so it serves any dataset.
    """
    validated = Path(cfg.paths.validated)
    if not validated.exists():
        raise Refused(f"{validated} is missing: demo traffic is drawn from it; `dvc pull` (or `dvc repro validate`)")
    source = pd.read_parquet(validated)
    rng = np.random.default_rng(seed)
    frame = source.iloc[rng.integers(0, len(source), rows)].drop(columns=[LABEL_COLUMN]).reset_index(drop=True)
    if drift <= 0:
        return frame
    for name in frame.columns:
        if name in (ID_COLUMN, TIME_COLUMN):
            continue
        column = frame[name]
        if column.dtype.kind in "iuf":
            step = drift * float(source[name].std())
            whole = column.dtype.kind in "iu"
            if whole:  # a whole number moves by whole steps: at least one, or rounding would undo the shift
                step = float(max(math.ceil(step), 1))
            shifted = (column + step).clip(source[name].min(), source[name].max())
            frame[name] = shifted.round().astype(column.dtype) if whole else shifted
        elif column.dtype.kind == "O" or str(column.dtype) in ("string", "category"):
            values = source[name].dropna().unique()
            moved = rng.random(rows) < drift / 2
            frame.loc[moved, name] = rng.choice(values, int(moved.sum()))
    return frame


def demo_requests(cfg: DictConfig, rows: int, drift: float, seed: int, chunk: int) -> list[dict[str, object]]:
    """Request bodies of `rows` demo rows (population shift `drift`), `chunk` rows each."""
    frame = demo_frame(cfg, rows, drift, seed)
    return [request_body(frame.iloc[start : start + chunk]) for start in range(0, rows, chunk)]


def send(url: str, bodies: list[dict[str, object]]) -> None:
    """Score the bodies through a running service (loopback only)."""
    from loadgen import require_loopback  # tools/ is on the path when this runs as a script

    require_loopback(url)
    with httpx.Client(timeout=60) as client:
        for body in bodies:
            client.post(f"{url.rstrip('/')}/predict", json=body).raise_for_status()


def simulate(cfg: DictConfig, directory: Path, bodies: list[dict[str, object]]) -> None:
    """Score the bodies with this checkout's model through the service's code path and its prediction log."""
    from {{ cookiecutter.package_name }}.training.artifact import load_model

    model, tag = load_model(cfg.paths.model), f"local:{cfg.paths.model}"
    # The folder as this command was given it (relative: to its working directory), not as a server resolves it.
    settings = PredictionLogSettings.model_validate({**cfg.serve.prediction_log, "dir": str(directory.resolve())})
    hook, request = PredictionLog(settings, tag), request_model(cfg.serve.max_rows_per_request)
    try:
        shape = shape_of(OmegaConf.to_container(cfg.dataset.response))  # type: ignore[arg-type]
    except ValueError as error:
        raise Refused(str(error)) from None
    for body in bodies:
        rows = request.model_validate_json(json.dumps(body)).transactions  # type: ignore[attr-defined]
        predict_rows(model, rows, tag, shape, hook)


def open_branch(cfg: DictConfig, today: dt.date) -> str:
    """A new data version (tools/data_version.py) committed on a new branch; the branch name."""
    branch = f"retrain/drift-{today.isoformat()}"
    if subprocess.run(["git", "diff", "--cached", "--quiet"]).returncode != 0:
        raise SystemExit("ERROR: changes are staged; the data-version commit must hold the new pointer only")
    subprocess.run(["git", "switch", "-c", branch], check=True)
    version = cfg.monitor.new_version
    seed = int(today.strftime("%Y%m%d"))  # a seed per day, apart from the small ones picked by hand
    command = ["--rows", str(version.rows), "--seed", str(seed), "--drift", str(version.drift), "--commit"]
    subprocess.run([sys.executable, str(Path(__file__).with_name("data_version.py")), *command], check=True)
    return branch


def window_start(now: dt.datetime, days: float, source: str) -> dt.datetime:
    """The window's start; a window that is not a positive number of days is refused (it could never judge)."""
    if isinstance(days, int | float) and not isinstance(days, bool) and math.isfinite(days) and days > 0:
        try:
            return now - dt.timedelta(days=days)
        except OverflowError:  # more days than a date can count back
            pass
    raise Refused(f"{source} must be a positive number of days (got {days!r})")


def unreadable_share_limit(cfg: DictConfig) -> float:
    limit = cfg.monitor.max_unreadable_share
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 <= limit <= 1:
        raise Refused(f"monitor.max_unreadable_share must be a share from 0 to 1 (got {limit!r})")
    return float(limit)


def check(cfg: DictConfig, files: list[Path], start: dt.datetime, now: dt.datetime, max_share: float) -> dict[str, Any]:
    settings = cfg.monitor
    limits = Limits(settings.psi_limit, settings.score_psi_limit, settings.bins, settings.min_rows)
    traffic, unreadable = read_traffic(files, start, now)
    print(f"{len(traffic)} logged rows from {start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC in {len(files)} files")
    record = unreadable.as_dict(max_share)
    if unreadable.named:
        first, named = where(unreadable.named[0]), len(unreadable.named)
        print(f"{skipped(record)}, the first {first}; {named} named in {settings.report}")
    reference = pd.read_parquet(cfg.paths.validated)
    if len(reference) > settings.reference_rows:
        reference = reference.sample(settings.reference_rows, random_state=cfg.seed)
    reference_scores = None
    if Path(cfg.paths.model).exists():
        from {{ cookiecutter.package_name }}.training.artifact import load_model

        reference_scores = load_model(cfg.paths.model).predict_proba(reference)
    else:
        print(f"no model at {cfg.paths.model}: the score's drift is not judged (`dvc pull` it)")
    report = drift_report(reference, traffic, limits, reference_scores, (start, now), record)
    write_json(Path(settings.report), report)
    write_atomically(Path(settings.html), html_report(report, reference, traffic, limits.bins, reference_scores))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=Path, help="prediction log dir (default: conf/serve prediction_log.dir)")
    parser.add_argument("--days", type=float, help="window: the last N days (default: conf/monitor window_days)")
    parser.add_argument("--open-branch", action="store_true", help="on drift, commit a new data version on a branch")
    parser.add_argument("--send-to", metavar="URL", help="instead: send demo traffic to a local service")
    parser.add_argument("--simulate", metavar="DIR", type=Path, help="instead: log demo traffic to DIR, no server")
    parser.add_argument("--rows", type=int, default=5000, help="demo traffic: rows (default 5000)")
    parser.add_argument("--drift", type=float, default=0.0, help="demo traffic: population shift (0: none)")
    parser.add_argument("--seed", type=int, default=7, help="demo traffic: sampling seed (default 7)")
    parser.add_argument("--chunk", type=int, default=500, help="demo traffic: rows per request (default 500)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except Refused as refused:
        print(f"ERROR: {refused}", file=sys.stderr)
        return REFUSED_EXIT


def run(args: argparse.Namespace) -> int:
    cfg = OmegaConf.load("params.yaml")
    assert isinstance(cfg, DictConfig)
    if args.send_to or args.simulate:
        for name in ("rows", "chunk"):
            if getattr(args, name) < 1:
                raise Refused(f"--{name} must be a whole number of rows >= 1 (got {getattr(args, name)})")
        bodies = demo_requests(cfg, args.rows, args.drift, args.seed, args.chunk)
        send(args.send_to, bodies) if args.send_to else simulate(cfg, args.simulate, bodies)
        print(f"scored {args.rows} demo rows (drift {args.drift}) via {args.send_to or 'the local model'}")
        return 0

    now = dt.datetime.now(dt.UTC)
    days, source = (args.days, "--days") if args.days is not None else (cfg.monitor.window_days, "monitor.window_days")
    start = window_start(now, days, source)  # before any reading: a window of no days can never judge
    max_share = unreadable_share_limit(cfg)
    logs = args.logs or resolve_log_dir(cfg.serve.prediction_log.dir)  # where a server started here writes
    if not Path(cfg.paths.validated).exists():
        raise Refused(f"{cfg.paths.validated} is missing: `dvc pull` (or `dvc repro validate`) first")
    files = log_files(logs)
    if not files:  # a wrong path must not pass as "no drift" day after day
        raise Refused(f"no prediction log under {logs} (is the service logging there?)")
    report = check(cfg, files, start, now, max_share)
    unreadable = report["unreadable"]
    if unreadable["files"]:  # how much of the log they hold is unknown: no verdict
        raise Refused(
            f"{unreadable['files']} prediction log file(s) cannot be read: no verdict; the first "
            f"{where(unreadable['named'][0])}, all named in {cfg.monitor.report}"
        )
    if unreadable["exceeded"]:  # the verdict would rest on a log this broken: none is given
        raise Refused(
            f"{unreadable['lines']} of {unreadable['of']} log lines are unreadable ({unreadable['share']:.2%}, more "
            f"than monitor.max_unreadable_share {unreadable['max_share']:.2%}): no verdict; the first "
            f"{where(unreadable['named'][0])}, all counted in {cfg.monitor.report}"
        )
    if report["drift"]:
        flagged = [*report["flagged"], *(["score"] if report["score_drifted"] else [])]
        print(f"DRIFT in {', '.join(flagged)}; wrote {cfg.monitor.report} and {cfg.monitor.html}")
        if args.open_branch:
            print(f"committed a new data version on {open_branch(cfg, now.date())}")
        return DRIFT_EXIT
    verdict = "no drift" if report["enough_rows"] else f"no verdict (fewer than {cfg.monitor.min_rows} rows)"
    print(f"{verdict}; wrote {cfg.monitor.report} and {cfg.monitor.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
