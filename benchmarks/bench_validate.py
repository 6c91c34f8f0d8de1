"""Throughput and memory of data validation in a generated project.

For each size, a seeded raw file is generated with a share of spoiled rows,
then measured these ways, every failure counted and the first 1,000 listed each time:

  checks only      the check plan over data already read: validate_frame(table) on the table in
                   memory (every check, counts, the bounded listing, the quarantined rows; the valid
                   rows stay a selection of the table). Files over --in-memory-up-to-mb are not read
                   whole: there a streamed pass scans the file and evaluates every check, counts and
                   lists the failures and writes nothing, so that figure includes the parquet read.
  stage in-proc    the `validate` stage function: read -> check -> write outputs, in memory or
                   streamed as the stage chooses by data.validation.stream_from_mb
  stage process    `python pipelines/validate.py` as DVC runs it (interpreter start and imports included)
  floor            a process that only reads the file, writes its rows and hashes them, as the stage
                   must: the least a validate process can take here. Stage and floor take turns,
                   --repeats rounds, and the best of each is kept, so their ratio compares like with like

Each measurement runs in its own child process, so the peak RSS printed is that
size's own. `--profile` adds where the time goes inside validation.

    python benchmarks/bench_validate.py                                 # 1M and 10M rows
    python benchmarks/bench_validate.py --rows 200000 --repeats 1       # quick look
    python benchmarks/bench_validate.py --project /tmp/x/fraud-detection --workdir /tmp/bv --profile
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    add_project_argument,
    child_env,
    import_package,
    machine_line,
    rate,
    resolve_project,
    run_child,
    self_peak_rss_mib,
    table,
)

MAX_QUARANTINE_SHARE = 0.05
FAILURES_LISTED = 1000  # max_failures_listed: every failure is counted, this many listed (as the report does)
RESULT_PREFIX = "RESULT "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_project_argument(parser)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000], help="sizes to measure")
    parser.add_argument("--invalid-share", type=float, default=0.002, help="share of rows spoiled on purpose")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per in-process measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep generated data here and reuse it (default: a scratch folder, removed)")
    parser.add_argument("--profile", action="store_true", help="also show where validation spends its time")
    parser.add_argument("--skip-process", action="store_true", help="leave out the `python pipelines/...` run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--in-memory-up-to-mb", type=float, default=1024.0,
                        help="raw files up to this size (MiB of parquet) are read whole for the checks-only "
                             "figure; larger ones get the streamed checks-only pass")
    # Internal: the child processes.
    parser.add_argument("--generate-to", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n-rows", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- child: generate
def generate(project: Path, path: Path, n_rows: int, share: float, seed: int) -> None:
    """Written a chunk at a time (100M rows do not fit in memory as one frame)."""
    package = import_package(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    importlib_module(package.__name__ + ".data.generate").write_transactions(
        path, n_rows, seed=seed, invalid_share=share)


def importlib_module(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


# ---------------------------------------------------------------- child: measure
def timed(repeats: int, function: Any) -> tuple[list[float], list[float], Any]:
    """Wall and CPU seconds of `repeats` runs of `function`, and its last value."""
    seconds, cpu, value = [], [], None
    for _ in range(repeats):
        value = None  # let the previous result go before the next run allocates its own
        started, started_cpu = time.perf_counter(), time.process_time()
        value = function()
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return seconds, cpu, value


def load_stage(project: Path) -> Any:
    """pipelines/validate.py as a module, so its `validate(cfg)` can be timed in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("validate_stage", project / "pipelines" / "validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_of(project: Path) -> str:
    """The reference time of the project's future-time check, from its params.yaml."""
    from omegaconf import OmegaConf

    return str(OmegaConf.load(project / "params.yaml").data.validation.as_of)


def measure(project: Path, raw: Path, repeats: int, profile: bool, in_memory_up_to_mb: float) -> dict[str, Any]:
    from omegaconf import OmegaConf

    package = import_package(project)
    validation = importlib_module(package.__name__ + ".data.validation")
    stage = load_stage(project)
    out = raw.parent / f"out-{raw.stem}"
    reference = as_of(project)
    params = OmegaConf.load(project / "params.yaml")
    streams = raw.stat().st_size >= float(params.data.validation.stream_from_mb) * 2**20
    nan = float("nan")
    breakdown = {"read_s": nan, "validate_s": nan, "pandera_s": nan, "write_s": nan}
    details: dict[str, Any] = {}

    if raw.stat().st_size <= in_memory_up_to_mb * 2**20:
        checks = "in-memory"
        read_s, _, table = timed(repeats, lambda: validation.read_raw(raw))
        library_s, library_cpu_s, result = timed(repeats, lambda: validation.validate_frame(
            table, as_of=reference, max_quarantine_share=MAX_QUARANTINE_SHARE, max_failures_listed=FAILURES_LISTED))
        breakdown.update(read_s=min(read_s), validate_s=min(library_s))
        if not streams:  # the stage's own phases, and Pandera for reference, where the stage works in memory
            write_s, _, _ = timed(repeats, lambda: validation.write_outputs(
                result, out / "valid.parquet", out / "quarantine.parquet", out / "validation.json"))
            frame = table.frame.to_pandas()  # Pandera's pandas backend, the reference, validates pandas frames
            pandera_s, _, _ = timed(repeats, lambda: pandera_only(package, frame, reference))
            breakdown.update(pandera_s=min(pandera_s), write_s=min(write_s))
            if profile:
                details = where_time_goes(package, validation, table, frame, result, reference)
            frame = None
    else:
        checks = "streamed"
        library_s, library_cpu_s, result = timed(repeats, lambda: checks_streamed(validation, raw, reference))
    counts = {"rows_total": result.rows_total, "rows_quarantined": result.rows_quarantined,
              "failures_total": result.failures_total, "failures_listed": len(result.failures),
              "passed": result.passed}
    result = table = None  # let the table go before the stage reads the file its own way

    cfg = OmegaConf.merge(params, {
        "paths": {"raw": str(raw), "validated": str(out / "valid.parquet"),
                  "quarantine": str(out / "quarantine.parquet"), "reports": str(out), "metrics": str(out / "metrics")},
        "data": {"validation": {"max_quarantine_share": MAX_QUARANTINE_SHARE,
                                "max_failures_listed": FAILURES_LISTED}}},
    )
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        stage_s, stage_cpu_s, code = timed(repeats, lambda: stage.validate(cfg))
    report = json.loads((out / "validation.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {
        "checks": checks,
        "stage_engine": "streaming" if streams else "in-memory",
        "library_s": library_s,
        "library_cpu_s": library_cpu_s,
        "stage_s": stage_s,
        "stage_cpu_s": stage_cpu_s,
        "stage_exit": code,
        "stage_report_failures": len(report["failures"]),
        "stage_report_failures_total": report["failures_total"],
        "counts": counts,
        "breakdown": breakdown,
        "details": details,
        "peak_rss_mib_inside": self_peak_rss_mib(),
    }


def checks_streamed(validation: Any, raw: Path, reference: str) -> Any:
    """Every check over a scan of `raw`, failures counted and the first ones listed; nothing written.

    The library's own plan and verdict (the pieces validate_file streams), without its sinks: only
    the failing rows' flags and values are kept, and the key column is scanned for duplicates.
    """
    import polars as pl

    spec = validation.row_checks(reference)
    source = pl.scan_parquet(raw)
    plan = validation._plan(source, spec, is_text=False, engine="streaming")
    failing = plan.flagged.filter(plan.any_bad()).select(
        validation.ROW, *plan.flag_names, *(rule.value.alias(f"__value{i}") for i, rule in enumerate(plan.rules)))
    bad = failing.collect(engine="streaming")
    return validation._verdict(plan, bad.lazy(), spec, max_quarantine_share=MAX_QUARANTINE_SHARE,
                               max_failures_listed=FAILURES_LISTED, engine="streaming")


def pandera_only(package: Any, frame: Any, reference: str) -> None:
    """Pandera alone (pandas backend) validating `frame` lazily, collecting every failure: the reference."""
    from pandera.errors import SchemaErrors

    schema = importlib_module(package.__name__ + ".data.rows").row_schema(reference)
    with contextlib.suppress(SchemaErrors):
        schema.validate(frame.reset_index(drop=True), lazy=True)


def where_time_goes(package: Any, validation: Any, table: Any, frame: Any, result: Any,
                    reference: str) -> dict[str, Any]:
    """Per-column pandera cost, clean vs spoiled data, pandera's copy, and validate_frame's own work."""
    from pandera.errors import SchemaErrors

    schema = importlib_module(package.__name__ + ".data.rows").row_schema(reference)

    def run(data: Any, **options: Any) -> float:
        started = time.perf_counter()
        with contextlib.suppress(SchemaErrors):
            schema.validate(data, lazy=True, **options)
        return time.perf_counter() - started

    clean = result.valid.to_pandas()
    def run_column(name: str) -> float:
        started = time.perf_counter()
        with contextlib.suppress(SchemaErrors):
            schema.columns[name].validate(frame[[name]], lazy=True)
        return time.perf_counter() - started

    per_column = {name: min(run_column(name) for _ in range(2)) for name in schema.columns}
    started = time.perf_counter()
    frame.copy()
    copy_s = time.perf_counter() - started
    profiler = cProfile.Profile()
    profiler.enable()
    validation.validate_frame(table, as_of=reference, max_quarantine_share=MAX_QUARANTINE_SHARE,
                              max_failures_listed=FAILURES_LISTED)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
    return {
        "pandera_clean_s": min(run(clean) for _ in range(2)),
        "pandera_clean_rows": len(clean),
        "pandera_spoiled_s": min(run(frame) for _ in range(2)),
        "pandera_spoiled_inplace_s": min(run(frame, inplace=True) for _ in range(2)),
        "frame_copy_s": copy_s,
        "per_column_s": per_column,
        "cprofile_tottime": text.getvalue(),
    }


# ---------------------------------------------------------------- parent
# The least any validate process can do with the file: start Python, import polars, read the raw
# parquet, write its rows as the stage writes the valid ones (snappy parquet) and hash them (the
# report's valid_md5). No check at all: the floor under the stage as a process on this machine.
IO_ONLY = """
import hashlib, sys
import polars as pl
pl.scan_parquet(sys.argv[1]).sink_parquet(sys.argv[2], compression="snappy", row_group_size=262144)
with open(sys.argv[2], "rb") as written:
    hashlib.file_digest(written, "md5")
"""


def data_file(workdir: Path, n_rows: int, share: float, seed: int) -> Path:
    return workdir / "data" / f"raw-{n_rows}-{share:g}-{seed}.parquet"


def child(project: Path, workdir: Path, *arguments: str, cwd: Path | None = None) -> Any:
    command = [sys.executable, *arguments]
    result = run_child(command, cwd or Path(__file__).parent, child_env(project), workdir / "logs")
    if result.returncode not in (0,):
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}")
    return result


def run_size(args: argparse.Namespace, project: Path, workdir: Path, n_rows: int) -> dict[str, Any]:
    here = str(Path(__file__).resolve())
    raw = data_file(workdir, n_rows, args.invalid_share, args.seed)
    if not raw.exists():
        started = time.perf_counter()
        generated = child(project, workdir, here, "--project", str(project), "--generate-to", str(raw),
                          "--n-rows", str(n_rows), "--invalid-share", str(args.invalid_share), "--seed",
                          str(args.seed))
        print(f"  generated {n_rows:,} rows in {time.perf_counter() - started:.1f}s "
              f"(generator peak RSS {generated.peak_rss_mib:,.0f} MiB)", flush=True)
    extra = ["--profile"] if args.profile else []
    measured = child(project, workdir, here, "--project", str(project), "--measure", str(raw),
                     "--repeats", str(args.repeats), "--in-memory-up-to-mb", str(args.in_memory_up_to_mb), *extra)
    line = next(line for line in reversed(measured.stdout.splitlines()) if line.startswith(RESULT_PREFIX))
    figures = json.loads(line[len(RESULT_PREFIX):])
    figures["peak_rss_mib"] = measured.peak_rss_mib
    figures["raw_mib"] = raw.stat().st_size / 2**20
    if not args.skip_process:
        out = workdir / f"process-{n_rows}"
        # As DVC runs it: no overrides (those compose conf/ with Hydra), a params.yaml in the working folder.
        from omegaconf import OmegaConf

        out.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.merge(OmegaConf.load(project / "params.yaml"), {
            "paths": {"raw": str(raw), "validated": str(out / "valid.parquet"),
                      "quarantine": str(out / "quarantine.parquet"), "reports": str(out),
                      "metrics": str(out / "metrics")},
            "data": {"validation": {"max_quarantine_share": MAX_QUARANTINE_SHARE,
                                    "max_failures_listed": FAILURES_LISTED}}}), out / "params.yaml")
        # Stage, start-up and floor take turns, `--repeats` rounds, so a ratio compares runs made under
        # the same load; the best of each is kept (the peak RSS: the largest).
        stage, start, floor = [], [], []
        for _ in range(args.repeats):
            stage.append(child(project, workdir, str(project / "pipelines" / "validate.py"), cwd=out))
            # The same interpreter start and imports with no data: what the stage pays before its first row.
            start.append(child(project, workdir, "-c", "import runpy; runpy.run_path('pipelines/validate.py')",
                               cwd=project))
            # The anchor: a process that only moves the rows as the stage must (polars in, parquet out, md5).
            floor.append(child(project, workdir, "-c", IO_ONLY, str(raw), str(out / "floor.parquet"), cwd=project))
        report = json.loads((out / "validation.json").read_text())
        figures["process"] = {"wall_s": min(run.wall_s for run in stage),
                              "peak_rss_mib": max(run.peak_rss_mib for run in stage),
                              "failures_listed": len(report["failures"]), "passed": report["passed"],
                              "start_only_s": min(run.wall_s for run in start),
                              "io_only_s": min(run.wall_s for run in floor)}
        shutil.rmtree(out, ignore_errors=True)
    return figures


def print_results(results: dict[int, dict[str, Any]], args: argparse.Namespace) -> None:
    rows = []
    for n_rows, f in results.items():
        checks_label = ("library, checks only: validate_frame on the table in memory" if f["checks"] == "in-memory"
                        else "library, checks only, streamed: scan + checks, nothing written (includes the read)")
        for label, wall, cpu, rss in (
            (checks_label, f["library_s"], f["library_cpu_s"], f"{f['peak_rss_mib']:,.0f} (bench child)"),
            (f"stage in-proc: read+check+write ({f['stage_engine']})", f["stage_s"], f["stage_cpu_s"], ""),
        ):
            rows.append([f"{n_rows:,}", label, f"{min(wall):.2f}", f"{statistics.median(wall):.2f}",
                         rate(n_rows, min(wall)), f"{min(cpu):.2f}", rate(n_rows, min(cpu)), rss])
        if "process" in f:
            p = f["process"]
            rows.append([f"{n_rows:,}", "stage process (python pipelines/validate.py)", f"{p['wall_s']:.2f}",
                         "", rate(n_rows, p["wall_s"]), "", "", f"{p['peak_rss_mib']:,.0f}"])
            rows.append([f"{n_rows:,}", "  of which start-up (interpreter + imports, no data)",
                         f"{p['start_only_s']:.2f}", "", "", "", "", ""])
            rows.append([f"{n_rows:,}", "floor: a process that only reads, writes and hashes (no checks)",
                         f"{p['io_only_s']:.2f}", "", rate(n_rows, p["io_only_s"]), "", "", ""])
            rows.append([f"{n_rows:,}", "  stage process / floor", f"{p['wall_s'] / p['io_only_s']:.2f}x",
                         "", "", "", "", ""])
    print(f"\nvalidation throughput, {args.invalid_share:.1%} rows spoiled, every failure counted, "
          f"{FAILURES_LISTED:,} listed, best/median of {args.repeats} (processes: best of {args.repeats}, "
          "taking turns)")
    print(table(["rows", "path", "best s", "median s", "rows/s (best)", "CPU s (best)", "rows per CPU-s",
                 "peak RSS MiB"], rows))

    rows = []
    for n_rows, f in results.items():
        b, c = f["breakdown"], f["counts"]
        rows.append([f"{n_rows:,}", f"{b['read_s']:.2f}", f"{b['validate_s']:.2f}", f"{b['pandera_s']:.2f}",
                     f"{b['write_s']:.2f}", f"{f['raw_mib']:.0f}",
                     f"{c['rows_quarantined']:,}", f"{c['failures_total']:,}", f"{c['failures_listed']:,}",
                     "yes" if c["passed"] else "NO"])
    print(f"\nwhere the stage's time goes (wall seconds, best of {args.repeats})")
    print("(write and Pandera are timed only where the stage works in memory; nan: not measured)")
    print(table(["rows", "read parquet", "validate_frame", "pandera alone (reference)", "write outputs", "raw MiB",
                 "quarantined", "failures", "listed", "passed"], rows))

    for n_rows, f in results.items():
        d = f.get("details")
        if not d:
            continue
        print(f"\nprofile at {n_rows:,} rows")
        print(table(["pandera on", "seconds", "rows/s"], [
            ["clean rows (no failures)", f"{d['pandera_clean_s']:.3f}", rate(d["pandera_clean_rows"],
                                                                               d["pandera_clean_s"])],
            ["spoiled frame (lazy, failures collected)", f"{d['pandera_spoiled_s']:.3f}",
             rate(n_rows, d["pandera_spoiled_s"])],
            ["spoiled frame, inplace=True (no defensive copy)", f"{d['pandera_spoiled_inplace_s']:.3f}",
             rate(n_rows, d["pandera_spoiled_inplace_s"])],
            ["(a plain frame.copy(), for scale)", f"{d['frame_copy_s']:.3f}", ""],
        ]))
        columns = sorted(d["per_column_s"].items(), key=lambda item: -item[1])
        print(table(["column checks", "seconds"], [[name, f"{s:.3f}"] for name, s in columns]))
        print("cProfile of one validate_frame call, by own time:")
        print("\n".join(line for line in d["cprofile_tottime"].splitlines()[-20:] if line.strip()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.generate_to:
        generate(args.project, args.generate_to, args.n_rows, args.invalid_share, args.seed)
        return 0
    if args.measure:
        figures = measure(args.project, args.measure, args.repeats, args.profile, args.in_memory_up_to_mb)
        print(RESULT_PREFIX + json.dumps(figures))
        return 0

    scratch = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    workdir = (args.workdir or scratch).resolve()
    try:
        project = resolve_project(args.project, workdir)
        import_package(project)
        import pandera  # noqa: F401  (named in the machine line)

        print(f"project {project}\n{machine_line()}, load average {os.getloadavg()[0]:.1f} at start")
        results: dict[int, dict[str, Any]] = {}
        for n_rows in args.rows:
            print(f"measuring {n_rows:,} rows ...", flush=True)
            results[n_rows] = run_size(args, project, workdir, n_rows)
        print_results(results, args)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end (timings are noisy when it exceeds the CPUs)")
        if args.json:
            args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2) + "\n")
        bad = [n for n, f in results.items()
               if f["counts"]["failures_listed"] != min(FAILURES_LISTED, f["counts"]["failures_total"])
               or f["counts"]["failures_total"] < f["counts"]["rows_quarantined"]
               or f["counts"]["rows_quarantined"] != int(n * args.invalid_share)
               or f["stage_exit"] != 0 or f.get("process", {}).get("passed") is False
               or f["stage_report_failures_total"] != f["counts"]["failures_total"]]
        if bad:
            print(f"\nFAILED: wrong counts or a failing stage at {bad} rows", file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
