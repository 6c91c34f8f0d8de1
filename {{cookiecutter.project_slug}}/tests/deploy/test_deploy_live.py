"""The local engine for real: `bentoml serve` slots behind nginx, switched and rolled back under load.

Stand-in bentos (same HTTP contract as the real service, built in a private BENTOML_HOME) make each
release and each fault cheap to produce. Everything binds to 127.0.0.1; the load generator has a
fixed request count and time limit. Needs nginx from the OS packages; fails without it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from support.standin import SMOKE_ROWS, build_standin

from {{ cookiecutter.package_name }}.deploy.proxy import nginx_binary
from {{ cookiecutter.package_name }}.deploy.runtime import free_ports, port_holder
from {{ cookiecutter.package_name }}.deploy.state import DeployError
from tools.loadgen import LoadRun, summarize

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "tools" / "deploy.py"


def _nginx() -> str | None:
    try:
        return nginx_binary()
    except DeployError:
        return None


NGINX = _nginx()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def nginx_installed() -> None:
    """The slow tier claims these proofs: without nginx they fail, they are never skipped."""
    if NGINX is None:
        pytest.fail("nginx is not installed: apt-get install -y nginx")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private BENTOML_HOME for the stand-ins."""
    return tmp_path_factory.mktemp("bentoml-home")


@pytest.fixture(scope="module")
def bentos(store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Stand-in releases in the private store: two good ones and three broken ones."""
    home, work = store, tmp_path_factory.mktemp("standins")
    return {
        "v1": build_standin(work, "v1", scale=0.5, bentoml_home=home),
        "v2": build_standin(work, "v2", scale=0.25, bentoml_home=home),
        "v1b": build_standin(work, "v1b", scale=0.5, bentoml_home=home),  # another build, v1's answers
        "crash": build_standin(work, "crash", mode="crash", bentoml_home=home),
        "wrong": build_standin(work, "wrong", mode="wrong", bentoml_home=home),
        "notready": build_standin(work, "notready", mode="never_ready", bentoml_home=home),
    }


class Project:
    """A git repo holding a copy of the state file with free ports; runs the documented commands."""

    def __init__(
        self,
        root: Path,
        store: Path | None,
        grace_s: float = 120.0,
        readyz_timeout_s: float = 60.0,
        shadow: dict | None = None,
    ) -> None:
        self.root = root
        self.store = store
        self.outputs: list[str] = []
        self.state = root / "bentos" / "deployment.yaml"
        self.state.parent.mkdir(parents=True)
        state = yaml.safe_load((ROOT / "bentos" / "deployment.yaml").read_text())
        blue, green, proxy = free_ports(3)
        self.proxy_port, self.ports = proxy, {"blue": blue, "green": green}
        state["live"] = None
        for name, port in self.ports.items():
            state["slots"][name] = {"bento": None, "port": port}
        state["proxy"]["port"] = proxy
        state["checks"].update(grace_period_s=grace_s, readyz_timeout_s=readyz_timeout_s)
        state["checks"]["shadow"].update(shadow or {})
        self.state.write_text(yaml.safe_dump(state, sort_keys=False))
        self.git("init", "-q", "-b", "main")
        self.git("add", "-A")
        self.git("commit", "-qm", "initial state")

    def git(self, *args: str) -> str:
        ident = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
        done = subprocess.run(["git", "-C", str(self.root), *ident, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def deploy(self, *args: str, ok: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        store = {"BENTOML_HOME": str(self.store)} if self.store else {}
        env = {
            **os.environ,
            **store,
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            **(env or {}),
        }
        done = subprocess.run(
            [sys.executable, str(DEPLOY), "--state", str(self.state), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        if ok:
            assert done.returncode == 0, f"deploy {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def status(self) -> dict:
        return json.loads(self.deploy("status", "--json").stdout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def answer(self) -> tuple[str, str]:
        """(slot, model) that the proxy sends a prediction to right now."""
        response = httpx.post(f"{self.url}/predict", json={"transactions": SMOKE_ROWS}, timeout=10)
        assert response.status_code == 200, response.text
        return response.headers["X-Deploy-Slot"], response.json()["model"]

    def load(self, rate: float = 150.0, seconds: float = 120.0, rows: list | None = None) -> LoadRun:
        body = {"transactions": rows or SMOKE_ROWS[:1]}
        return LoadRun(
            f"{self.url}/predict",
            body,
            requests=int(rate * seconds),
            max_seconds=seconds,
            concurrency=8,
            rate=rate,
        ).start()


@pytest.fixture
def project(tmp_path: Path, store: Path, bentos: dict[str, str]) -> Iterator[Project]:
    made = Project(tmp_path / "project", store)
    yield made
    made.deploy("stop", ok=False)


def timed(project: Project, *args: str) -> tuple[float, float]:
    """Run a deploy command; its (start, end) on the load generator's clock. Records what it printed."""
    start = time.monotonic()
    project.outputs.append(project.deploy(*args).stdout)
    return start, time.monotonic()


def test_release_switch_and_rollback_under_load(project: Project, bentos: dict[str, str]) -> None:
    project.deploy("set", "--bento", bentos["v1"], "--commit")
    project.deploy("apply")
    assert project.answer() == ("blue", "standin-model:v1")

    load = project.load()
    time.sleep(1.0)
    project.deploy("set", "--bento", bentos["v2"], "--commit")
    release = timed(project, "apply")
    assert project.answer() == ("green", "standin-model:v2")
    time.sleep(1.0)
    project.git("revert", "--no-edit", "HEAD")  # the GitOps rollback: revert the release commit, apply
    revert = timed(project, "apply")
    assert project.answer() == ("blue", "standin-model:v1")
    time.sleep(1.0)
    project.git("revert", "--no-edit", "HEAD")  # undo the rollback: v2 again, its slot still warm
    again = timed(project, "apply")
    assert project.answer() == ("green", "standin-model:v2")
    time.sleep(1.0)
    flip = timed(project, "rollback", "--commit")  # the imperative rollback: edit + commit + apply
    assert project.answer() == ("blue", "standin-model:v1")
    time.sleep(1.0)
    samples = load.stop()

    figures = {
        "release": summarize(samples, release, "green"),
        "git revert + apply": summarize(samples, revert, "blue"),
        "re-release": summarize(samples, again, "green"),
        "rollback": summarize(samples, flip, "blue"),
    }
    print(json.dumps({name: {k: v for k, v in f.items() if k != "failure_examples"} for name, f in figures.items()}))
    overall = summarize(samples)
    assert overall["failed"] == 0, overall["failure_examples"]
    assert overall["requests"] > 500 and set(overall["by_slot"]) == {"blue", "green"}
    for name, figure in figures.items():
        assert figure["all_on_new_s"] is not None, name
        assert figure["all_on_new_s"] <= figure["window_s"] + 2.0, f"{name}: traffic moved after the command ended"
    release_out, *switch_outs = project.outputs
    assert "started" in release_out, "a new release starts its slot"
    for out in switch_outs:  # within the grace period the other slot is still warm: a switch, no redeploy
        assert "switched traffic" in out and "started" not in out, out

    status = project.status()
    assert status["in_sync"] and status["proxy"]["live"] == "blue"
    assert status["slots"]["green"]["running"] and status["slots"]["green"]["retire_in_s"] is not None
    assert status["slots"]["green"]["model_version"] == "standin-v2"
    log = project.git("log", "--format=%s").splitlines()
    assert log[0].startswith("rollback: live green -> blue") and log[1].startswith("Revert")


def test_faults_leave_traffic_where_it_was(tmp_path: Path, store: Path, bentos: dict[str, str]) -> None:
    project = Project(tmp_path / "project", store, readyz_timeout_s=12.0)
    try:
        project.deploy("set", "--bento", bentos["v1"], "--commit")
        project.deploy("apply")
        baseline = project.state.read_text()
        load = project.load(rate=40.0)

        def fault(
            bento: str | None, message: str, env: dict[str, str] | None = None, state: dict | None = None
        ) -> None:
            project.state.write_text(baseline)
            if bento is not None:
                project.deploy("set", "--bento", bento, "--no-verify")
            if state is not None:
                raw = yaml.safe_load(project.state.read_text())
                project.state.write_text(yaml.safe_dump({**raw, **state}))
            failed = project.deploy("apply", ok=False, env=env)
            assert failed.returncode == 2, failed.stdout + failed.stderr
            assert message in failed.stderr, failed.stderr
            assert project.answer() == ("blue", "standin-model:v1"), f"traffic moved after: {message}"

        fault("deploy_standin:missing", "not in the local bento store")
        fault(None, "more than one slot is marked live", state={"live": ["blue", "green"]})
        fault(bentos["crash"], "crashed on start")
        fault(bentos["wrong"], "gave a different answer")
        fault(bentos["notready"], "not ready after 12 s")
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", project.ports["green"]))
            squatter.listen()
            fault(bentos["v2"], f"port {project.ports['green']} for the green slot")
        wrapper = tmp_path / "nginx-that-cannot-reload"
        wrapper.write_text(
            f'#!/bin/sh\ncase "$*" in *reload*) echo "reload refused" >&2; exit 1;; esac\nexec {NGINX} "$@"\n'
        )
        wrapper.chmod(0o755)
        fault(bentos["v2"], "nginx reload failed", env={"DEPLOY_NGINX": str(wrapper)})
        project.state.write_text(baseline.replace(bentos["v1"], bentos["v2"]))
        failed = project.deploy("apply", ok=False)
        assert "replacing the live slot in place would drop traffic" in failed.stderr

        project.state.write_text(baseline)
        project.deploy("set", "--bento", bentos["v2"])
        project.deploy("apply")  # and after all that, a good release still goes through
        assert project.answer() == ("green", "standin-model:v2")
        samples = load.stop()
        overall = summarize(samples)
        assert overall["failed"] == 0, overall["failure_examples"]
    finally:
        project.deploy("stop", ok=False)


# v1 calls this row fraud (0.75), v2 does not (0.375): the two models disagree on live traffic.
SHADOW_ROWS = [SMOKE_ROWS[0], {"transaction_id": "big", "amount": 1500.0}]


def test_shadow_traffic_keeps_a_disagreeing_bento_out_and_lets_an_agreeing_one_in(
    tmp_path: Path, store: Path, bentos: dict[str, str]
) -> None:
    project = Project(tmp_path / "project", store, shadow={"enabled": True, "window_s": 6.0, "min_requests": 20})
    nginx_dir = project.root / "bentos" / ".state" / "nginx"
    try:
        project.deploy("set", "--bento", bentos["v1"], "--commit")
        first = project.deploy("apply")
        assert "shadow:" not in first.stdout + first.stderr, "the first deployment has no live traffic to mirror"
        load = project.load(rate=40.0, seconds=90.0, rows=SHADOW_ROWS)
        time.sleep(1.0)

        project.deploy("set", "--bento", bentos["v2"], "--commit")
        refused = project.deploy("apply", ok=False)
        said = refused.stdout + refused.stderr
        print(said)
        assert refused.returncode == 2, said
        assert "disagrees with the live slot on shadowed traffic, traffic not moved" in said, said
        assert "decisions agree on 0.500 of rows" in said, said
        figures = re.search(r"(\d+) requests mirrored in \d+ s, 0 failed; \d+ re-sent to both slots, 0 failed", said)
        assert figures, said
        mirrored = int(figures.group(1))
        assert mirrored >= 100, f"the idle slot got {mirrored} mirrored requests in 6 s at 40 req/s"
        assert project.answer() == ("blue", "standin-model:v1")
        assert httpx.get(f"{project.url}/_deploy", timeout=5).text.strip() == f"blue {bentos['v1']}", "still mirrors"
        assert "mirror" not in (nginx_dir / "nginx.conf").read_text(), "the proxy still mirrors"
        assert not list(nginx_dir.glob("shadow-*.log")), "the logs of request bodies were left on disk"
        assert not project.status()["slots"]["green"]["running"], "the refused slot keeps running"

        project.git("revert", "--no-edit", "HEAD")
        project.deploy("set", "--bento", bentos["v1b"], "--commit")
        passed = project.deploy("apply")
        print(passed.stdout)
        assert "switched traffic blue -> green" in passed.stdout, passed.stdout
        assert re.search(
            r"shadow: \d+ requests mirrored in \d+ s, 0 failed; \d+ re-sent to both slots, 0 failed; "
            r"\d+ rows compared: decisions agree 1\.000, score difference mean 0\.0000",
            passed.stdout,
        ), passed.stdout
        assert project.answer() == ("green", "standin-model:v1b")

        flip = project.deploy("rollback", "--commit")  # blue was live: no second shadow window
        assert "switched traffic green -> blue" in flip.stdout and "shadow:" not in flip.stdout + flip.stderr
        samples = load.stop()
        overall = summarize(samples)
        assert overall["failed"] == 0, overall["failure_examples"]
        assert not list(nginx_dir.glob("shadow-*.log")), "the logs of request bodies were left on disk"
        assert "mirror" not in (nginx_dir / "nginx.conf").read_text(), "the proxy still mirrors"
        events = [json.loads(line) for line in (project.root / "bentos" / ".state" / "events.jsonl").open()]
        shadows = [event for event in events if event["event"] == "shadow"]
        assert [event["bento"] for event in shadows] == [bentos["v2"], bentos["v1b"]]
        assert shadows[0]["mirrored"] == mirrored and shadows[0]["problems"] and not shadows[1]["problems"]
    finally:
        project.deploy("stop", ok=False)


def test_grace_period_retires_the_old_slot_and_rollback_restarts_it(
    tmp_path: Path, store: Path, bentos: dict[str, str]
) -> None:
    project = Project(tmp_path / "project", store, grace_s=2.0)
    try:
        project.deploy("set", "--bento", bentos["v1"])
        project.deploy("apply")
        project.deploy("set", "--bento", bentos["v2"])
        project.deploy("apply")
        deadline = time.monotonic() + 30
        while project.status()["slots"]["blue"]["running"]:
            assert time.monotonic() < deadline, "the reaper did not stop blue after its grace period"
            time.sleep(0.5)
        rolled = project.deploy("rollback")
        assert "started" in rolled.stdout, "after the grace period a rollback redeploys the old slot"
        assert project.answer() == ("blue", "standin-model:v1")
    finally:
        stopped = project.deploy("stop", ok=False)
    assert stopped.returncode == 0
    for port in [project.proxy_port, *project.ports.values()]:
        assert port_holder(port) is None, f"port {port} still held after stop"  # everything it started is gone


def test_the_real_project_bento_serves_through_the_proxy(packaged_workspace: Path, tmp_path: Path) -> None:
    """After `dvc repro`: the project's own bento passes the checks and takes load through nginx."""
    report = packaged_workspace / "reports" / "package.json"
    tag = json.loads(report.read_text())["bento_tag"]
    project = Project(tmp_path / "project", store=packaged_workspace / "tmp" / "bentoml")
    try:
        project.deploy("set", "--bento", tag)
        project.deploy("apply")
        status = project.status()
        assert status["in_sync"] and status["slots"]["blue"]["model_version"]
        # loadtest replays the bento's own smoke request through the proxy: every answer must be a 200.
        loaded = project.deploy("loadtest", "--requests", "200", "--seconds", "30", "--rate", "50")
        assert json.loads(loaded.stdout)["failed"] == 0
    finally:
        project.deploy("stop", ok=False)
