"""Drift monitor: the served model's logged traffic against the data it was trained on.

    python tools/monitor.py                                  # judge the last window_days of the log
    python tools/monitor.py --logs DIR --days 1              # another log dir (default conf/serve's), window
    python tools/monitor.py --open-branch                    # on drift: a new data version on retrain/drift-<date>
    python tools/monitor.py --send-to http://127.0.0.1:3000 --rows 5000 --drift 0.5   # demo traffic

Writes reports/drift.json (the verdict, every feature's PSI and limit, the window and row counts)
and reports/drift.html (one plot per drifted feature). Exit status: 0 no drift (or too little
traffic for a verdict), 3 drift, 1 or 2 the monitor could not run. Limits: conf/monitor.

The reference is the training data and model of this checkout (paths.validated and paths.model
as dvc.lock pins them; `dvc pull` first): run it on the commit whose model is live.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from {{ cookiecutter.package_name }}.data import generate_transactions
from {{ cookiecutter.package_name }}.monitoring.drift import (
    Limits,
    drift_report,
    log_files,
    read_traffic,
    score_frame,
    write_report,
)
from {{ cookiecutter.package_name }}.monitoring.report import html_report
from {{ cookiecutter.package_name }}.release.package import request_body

DRIFT_EXIT = 3


def send(url: str, rows: int, drift: float, seed: int, chunk: int) -> int:
    """Score `rows` generated transactions (population shift `drift`) through the service, `chunk` per request."""
    from loadgen import require_loopback  # tools/ is on the path when this runs as a script

    require_loopback(url)
    frame = generate_transactions(rows, seed=seed, drift=drift, id_prefix="demo").drop(columns="is_fraud")
    with httpx.Client(timeout=60) as client:
        for start in range(0, rows, chunk):
            response = client.post(f"{url.rstrip('/')}/predict", json=request_body(frame.iloc[start : start + chunk]))
            response.raise_for_status()
    print(f"sent {rows} rows (drift {drift}) to {url}")
    return 0


def open_branch(cfg: DictConfig, today: dt.date) -> str:
    """A new data version (tools/data_version.py) committed on a new branch; the branch name."""
    branch = f"retrain/drift-{today.isoformat()}"
    if subprocess.run(["git", "diff", "--cached", "--quiet"]).returncode != 0:
        raise SystemExit("ERROR: changes are staged; the data-version commit must hold the new pointer only")
    subprocess.run(["git", "switch", "-c", branch], check=True)
    version = cfg.monitor.new_version
    seed = int(today.strftime("%Y%m%d"))  # one new version a day, never a seed an earlier version used
    command = ["--rows", str(version.rows), "--seed", str(seed), "--drift", str(version.drift), "--commit"]
    subprocess.run([sys.executable, str(Path(__file__).with_name("data_version.py")), *command], check=True)
    return branch


def check(cfg: DictConfig, logs: Path, days: float, now: dt.datetime) -> dict[str, object]:
    settings = cfg.monitor
    limits = Limits(settings.psi_limit, settings.score_psi_limit, settings.bins, settings.min_rows)
    start = now - dt.timedelta(days=days)
    files = log_files(logs)
    traffic = read_traffic(files, start, now)
    print(f"{len(traffic)} logged rows from {start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC in {len(files)} files")
    reference = pd.read_parquet(cfg.paths.validated)
    if len(reference) > settings.reference_rows:
        reference = reference.sample(settings.reference_rows, random_state=cfg.seed)
    reference_scores = None
    if Path(cfg.paths.model).exists():
        from {{ cookiecutter.package_name }}.training.artifact import load_model

        reference_scores = score_frame(load_model(cfg.paths.model), reference)
    else:
        print(f"no model at {cfg.paths.model}: the score's drift is not judged (`dvc pull` it)")
    report = drift_report(reference, traffic, limits, reference_scores, (start, now))
    write_report(report, Path(settings.report))
    page = html_report(report, reference, traffic, limits.bins, reference_scores)
    Path(settings.html).write_text(page, encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=Path, help="prediction log dir (default: conf/serve prediction_log.dir)")
    parser.add_argument("--days", type=float, help="window: the last N days (default: conf/monitor window_days)")
    parser.add_argument("--open-branch", action="store_true", help="on drift, commit a new data version on a branch")
    parser.add_argument("--send-to", metavar="URL", help="instead: send generated traffic to a local service")
    parser.add_argument("--rows", type=int, default=5000, help="--send-to: rows to send (default 5000)")
    parser.add_argument("--drift", type=float, default=0.0, help="--send-to: the generator's population shift")
    parser.add_argument("--seed", type=int, default=7, help="--send-to: generator seed (default 7)")
    parser.add_argument("--chunk", type=int, default=500, help="--send-to: rows per request (default 500)")
    args = parser.parse_args(argv)
    if args.send_to:
        return send(args.send_to, args.rows, args.drift, args.seed, args.chunk)

    cfg = OmegaConf.load("params.yaml")
    assert isinstance(cfg, DictConfig)
    logs = args.logs or Path(cfg.serve.prediction_log.dir)
    if not Path(cfg.paths.validated).exists():
        print(f"ERROR: {cfg.paths.validated} is missing: `dvc pull` (or `dvc repro validate`) first", file=sys.stderr)
        return 2
    now = dt.datetime.now(dt.UTC)
    report = check(cfg, logs, args.days if args.days is not None else cfg.monitor.window_days, now)
    if report["drift"]:
        flagged = [*report["flagged"], *(["score"] if report["score_drifted"] else [])]  # type: ignore[misc]
        print(f"DRIFT in {', '.join(flagged)}; wrote {cfg.monitor.report} and {cfg.monitor.html}")
        if args.open_branch:
            print(f"committed a new data version on {open_branch(cfg, now.date())}")
        return DRIFT_EXIT
    verdict = "no drift" if report["enough_rows"] else f"no verdict (fewer than {cfg.monitor.min_rows} rows)"
    print(f"{verdict}; wrote {cfg.monitor.report} and {cfg.monitor.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
