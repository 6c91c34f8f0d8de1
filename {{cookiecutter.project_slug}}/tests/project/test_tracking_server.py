"""A real MLflow tracking server: the pipeline logs and registers through it, the gate finds the champion there.

Starts `mlflow server` on loopback the way the README's "Tracking server" section does (a database
backend, artifacts proxied by the server), points MLFLOW_TRACKING_URI at it and runs the pipeline
twice: the first model is promoted, the retrain is judged against it by the `champion` alias.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from conftest import make_workspace, run

from {{ cookiecutter.package_name }}.deploy.runtime import Process, free_ports, spawn, stop

FAST = [sys.executable, "tools/params.py", "debug=fast"]
# A server start and two whole-pipeline runs: the slow tier.
pytestmark = pytest.mark.slow


def wait_healthy(uri: str, process: Process, log: Path, timeout: float = 300) -> str:
    """`uri` once the server answers /health; fail with its log when it exits or never answers (a busy host is slow)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise AssertionError(f"mlflow server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return uri
        except OSError:
            time.sleep(1)
    raise AssertionError(f"mlflow server did not answer {uri}/health in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """Starts `mlflow server` (a SQLite backend, its own artifact folder, a free loopback port); call for its URI.

    The call waits for /health: the server boots (a minute or more on a busy host) while the test prepares.
    """
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_ports(1)[0]
    log = root / "server.log"
    command = [
        *("mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "artifacts")),
    ]
    # Its own session: the CLI starts uvicorn and a job runner, and `stop` ends all of them.
    process = spawn(command, log)
    try:
        yield lambda: wait_healthy(f"http://127.0.0.1:{port}", process, log)
    finally:
        stop(process, timeout_s=60)


def report(workspace: Path, name: str) -> dict:
    return json.loads((workspace / "reports" / name).read_text())


def test_the_gate_finds_the_champion_by_alias_on_the_server_and_promote_moves_it(
    server: Callable[[], str], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    workspace = make_workspace(tmp_path)  # while the server boots
    uri = server()
    on_server = {"MLFLOW_TRACKING_URI": uri}
    name = yaml.safe_load((workspace / "params.yaml").read_text())["logger"]["registered_model_name"]
    run(FAST, workspace)
    run(["dvc", "repro"], workspace, timeout=900, env=on_server)
    assert report(workspace, "gate.json")["champion"] is None  # an empty server: the first release
    first = report(workspace, "package.json")["model_version"]
    run([sys.executable, "tools/promote.py", "--approved-by", "alice"], workspace, env=on_server)  # the challenger

    run([*FAST, "seed=7"], workspace)  # another model, judged against the one the server holds as champion
    run(["dvc", "repro"], workspace, timeout=900, env=on_server)
    gate = report(workspace, "gate.json")
    assert gate["passed"]
    champion = gate["champion"]
    assert champion["source"] == "registry" and champion["location"] == uri
    assert champion["reference"] == f"{name} v{first}"
    assert champion["model_md5"] != gate["candidate"]["model_md5"]
    second = report(workspace, "package.json")["model_version"]
    assert second != first

    run([sys.executable, "tools/promote.py", "--version", second, "--approved-by", "bob"], workspace, env=on_server)
    client = MlflowClient(uri)
    moved = client.get_model_version_by_alias(name, "champion")
    assert str(moved.version) == second and moved.tags["approved_by"] == "bob"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == second
    assert not (workspace / "mlflow.db").exists(), "everything went to the server, nothing to the local default store"
