"""The benchmark scripts run end to end on a freshly baked project (tiny sizes; speed is never asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEMPLATE, bake, run

BENCHMARKS = TEMPLATE / "benchmarks"


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A default bake; the benchmarks import its package from src/, so nothing is installed."""
    return bake(tmp_path_factory.mktemp("bench"))


def run_benchmark(script: str, *arguments: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *arguments], cwd=cwd,
                            capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
    tail = f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{script} exited {result.returncode}\n{tail}"
    return result.stdout


def test_bench_validate_lists_every_failure(baked: Path, tmp_path: Path) -> None:
    figures_file = tmp_path / "validate.json"
    output = run_benchmark("bench_validate.py", "--project", str(baked), "--rows", "5000", "--repeats", "1",
                           "--profile", "--workdir", str(tmp_path / "work"), "--json", str(figures_file), cwd=tmp_path)
    assert "rows/s" in output and "peak RSS" in output
    figures = json.loads(figures_file.read_text())["5000"]
    counts = figures["counts"]
    assert counts["rows_quarantined"] == 10  # 0.2% of 5000 rows spoiled, each one way
    assert counts["failures_listed"] == counts["failures_total"] == 10
    assert figures["stage_exit"] == 0 and figures["stage_report_failures"] == 10
    assert figures["process"]["passed"] and figures["process"]["failures_listed"] == 10
    assert figures["peak_rss_mib"] > 0 and figures["details"]["per_column_s"]


def test_bench_validate_checks_streamed_where_the_file_is_not_read_whole(baked: Path, tmp_path: Path) -> None:
    figures_file = tmp_path / "validate.json"
    run_benchmark("bench_validate.py", "--project", str(baked), "--rows", "5000", "--repeats", "1", "--skip-process",
                  "--in-memory-up-to-mb", "0", "--workdir", str(tmp_path / "work"), "--json", str(figures_file),
                  cwd=tmp_path)
    figures = json.loads(figures_file.read_text())["5000"]
    assert figures["checks"] == "streamed"
    assert figures["counts"]["rows_quarantined"] == 10
    assert figures["counts"]["failures_listed"] == figures["counts"]["failures_total"] == 10


def test_bench_train_runs_every_path_on_cpu(baked: Path, tmp_path: Path) -> None:
    figures_file = tmp_path / "train.json"
    output = run_benchmark("bench_train.py", "--project", str(baked), "--device", "cpu", "--rows", "4000",
                           "--batch-size", "256", "--epochs", "1", "--repeats", "1", "--ablations", "--inner-steps",
                           "2", "--count-syncs", "--threads", "1", "--json", str(figures_file), cwd=tmp_path)
    assert "Lightning / raw =" in output
    figures = json.loads(figures_file.read_text())
    assert figures["device"] == "cpu" and figures["bf16"] is False
    for path in ("raw", "lightning", "lightning+val", "dataloader", "lightning:k-steps"):
        (run,) = figures["runs"][path]
        assert run["samples"] > 0 and run["wall_s"] > 0, path
        assert figures["scalar_reads_per_step"][path] >= 0, path


@pytest.mark.gpu
def test_bench_train_on_gpu(baked: Path, tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch")
    figures_file = tmp_path / "train-gpu.json"
    output = run_benchmark("bench_train.py", "--project", str(baked), "--device", "cuda", "--rows", "20000",
                           "--batch-size", "1024", "--epochs", "1", "--repeats", "1", "--paths", "raw", "lightning",
                           "--count-syncs", "--json", str(figures_file), cwd=tmp_path)
    assert "training throughput on cuda (bf16 autocast)" in output
    figures = json.loads(figures_file.read_text())
    assert figures["device"] == "cuda" and figures["bf16"] is True
    assert all(run["samples"] > 0 for runs in figures["runs"].values() for run in runs)


@pytest.mark.proof  # needs wrk (.ci/run installs it): without it this fails, it is never skipped
def test_bench_serve_leaves_the_projects_prediction_log_alone(project_copy: Path, tmp_path: Path) -> None:
    """The benchmark's traffic (one row, repeated) would otherwise fill the log the drift monitor reads."""
    if shutil.which("wrk") is None:
        pytest.fail("wrk is not installed: apt-get install -y wrk")
    store = {"BENTOML_HOME": str(tmp_path / "bentoml")}
    run([sys.executable, "tools/params.py", "debug=fast"], cwd=project_copy)
    run(["dvc", "repro"], cwd=project_copy, timeout=1800, env=store)
    logs = project_copy / "logs"
    logs.mkdir()
    (logs / "served-before.log").write_text("a line a user's server wrote\n")
    before = sorted((p.relative_to(logs), p.read_bytes()) for p in logs.rglob("*") if p.is_file())
    output = run_benchmark("bench_serve.py", "--project", str(project_copy), "--requests", "200", "--runs", "1",
                           "--warmup-s", "0.5", "--rss-requests", "0", cwd=tmp_path, env=store)
    assert "(b) bento /predict" in output
    after = sorted((p.relative_to(logs), p.read_bytes()) for p in logs.rglob("*") if p.is_file())
    assert after == before, "the benchmark wrote into the project's prediction log"


@pytest.mark.slow  # a bake and three stage processes
def test_bench_train_stage_mode_streams_and_repeats_the_model(tmp_path: Path) -> None:
    figures_file = tmp_path / "stage.json"
    output = run_benchmark("bench_train.py", "--stage-rows", "30000", "--set", "debug=fast", "trainer.max_epochs=1",
                           "data.in_memory_max_rows=0", "--json", str(figures_file), cwd=tmp_path)
    assert "model.pt identical on every forced rerun: yes" in output
    runs = json.loads(figures_file.read_text())["stage"]
    assert [run["path"] for run in runs] == ["streamed", "streamed"]
    assert all(run["peak_rss_mib"] > 0 and run["cpu_s"] > 0 and run["wall_s"] > 0 and run["train_rows"] > 20_000
               for run in runs)
    assert runs[0]["model_md5"] == runs[1]["model_md5"]
