"""The deployment state file, the CLI that edits it, and the engine's pure parts (no server started here)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }}.deploy.checks import differences
from {{ cookiecutter.package_name }}.deploy.proxy import nginx_binary, render_conf, status_line
from {{ cookiecutter.package_name }}.deploy.runtime import port_holder, require_free_port
from {{ cookiecutter.package_name }}.deploy.state import (
    DeployError,
    load_state,
    parse_state,
    update_state_file,
    with_bento,
)
from tools.loadgen import LoadRun, Sample, percentile, require_loopback, summarize

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "bentos" / "deployment.yaml"
DEPLOY = ROOT / "tools" / "deploy.py"
TAG_A, TAG_B = "fraud_svc:aaa111", "fraud_svc:bbb222"


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    """A private copy of the project's state file."""
    target = tmp_path / "bentos" / "deployment.yaml"
    target.parent.mkdir()
    shutil.copyfile(STATE, target)
    return target


def raw_state() -> dict:
    return yaml.safe_load(STATE.read_text())


def deploy(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEPLOY), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_the_committed_state_is_valid_and_empty() -> None:
    state = load_state(STATE)
    assert state.live is None
    assert {name: slot.bento for name, slot in state.slots.items()} == {"blue": None, "green": None}
    assert state.checks.smoke and state.checks.grace_period_s > 0
    assert state.kubernetes is not None and state.idle() == "blue"


def test_set_fills_the_idle_slot_and_promotes_it(state_file: Path) -> None:
    state = load_state(state_file)
    slot, live = with_bento(state, TAG_A)
    assert (slot, live) == ("blue", "blue")
    state = update_state_file(state_file, live=live, bentos={slot: TAG_A})
    slot, live = with_bento(state, TAG_B)
    assert (slot, live) == ("green", "green")
    state = update_state_file(state_file, live=live, bentos={slot: TAG_B})
    assert state.live == "green" and state.slots["blue"].bento == TAG_A
    assert with_bento(state, TAG_B) == ("green", "green"), "re-setting the live bento changes nothing"
    assert with_bento(state, "fraud_svc:ccc333", promote=False) == ("blue", "green")


def test_editing_keeps_comments_so_the_diff_is_the_change(state_file: Path) -> None:
    before = state_file.read_text().splitlines()
    update_state_file(state_file, live="blue", bentos={"blue": TAG_A})
    after = state_file.read_text().splitlines()
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert [new.split("#")[0].strip() for _, new in changed] == ["live: blue", f"bento: {TAG_A}"]


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"live": ["blue", "green"]}, "more than one slot is marked live"),
        ({"live": "both"}, "more than one slot is marked live"),
        (
            {
                "live": "blue",
                "slots": {
                    "blue": {"bento": TAG_A, "port": 3001, "live": True},
                    "green": {"bento": TAG_B, "port": 3002, "live": True},
                },
            },
            "more than one slot is marked live",
        ),
        ({"live": "green"}, "slots.green.bento is empty"),
        ({"live": "purple"}, "live"),
        (
            {"slots": {"blue": {"bento": None, "port": 3001}, "green": {"bento": None, "port": 3001}}},
            "ports must all differ",
        ),
        (
            {
                "slots": {
                    "blue": {"bento": "fraud_svc:latest", "port": 3001},
                    "green": {"bento": None, "port": 3002},
                }
            },
            "pin an exact version",
        ),
        (
            {"slots": {"blue": {"bento": "Not A Tag", "port": 3001}, "green": {"bento": None, "port": 3002}}},
            "is not a bento tag",
        ),
        ({"slots": {"blue": {"bento": None, "port": 3001}}}, "both blue and green"),
        ({"checks": {"grace_period_s": -1}}, "checks.grace_period_s"),
        ({"proxy": {"port": 80}}, "proxy.port"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_states_are_clear_errors(edit: dict, message: str) -> None:
    with pytest.raises(DeployError, match=message):
        parse_state({**raw_state(), **edit}, "deployment.yaml")


def test_a_state_file_that_is_not_yaml_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "deployment.yaml"
    broken.write_text("live: [blue\n")
    with pytest.raises(DeployError, match="not valid YAML"):
        load_state(broken)
    with pytest.raises(DeployError, match="not found"):
        load_state(tmp_path / "missing.yaml")


def test_cli_set_and_rollback_edit_the_file(state_file: Path) -> None:
    assert deploy("--state", str(state_file), "set", "--bento", TAG_A, "--no-verify").returncode == 0
    assert deploy("--state", str(state_file), "set", "--bento", TAG_B, "--no-verify").returncode == 0
    assert load_state(state_file).live == "green"
    rolled = deploy("--state", str(state_file), "rollback", "--no-apply")
    assert rolled.returncode == 0, rolled.stderr
    state = load_state(state_file)
    assert state.live == "blue" and state.slots["green"].bento == TAG_B


GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def init_repo(state_file: Path) -> list[str]:
    """A git repository around the state file's copy, with one commit; return the git command for it."""
    git = ["git", "-C", str(state_file.parent.parent), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return git


def test_cli_set_commits_one_release_per_commit(state_file: Path) -> None:
    git = init_repo(state_file)
    env = GIT_ENV
    done = deploy("--state", str(state_file), "set", "--bento", TAG_A, "--no-verify", "--commit", env=env)
    assert done.returncode == 0, done.stderr
    log = subprocess.run([*git, "log", "--format=%s"], capture_output=True, text=True, check=True).stdout
    assert log.splitlines()[0] == f"deploy: {TAG_A} -> blue (live: blue)"
    subprocess.run([*git, "revert", "--no-edit", "HEAD"], check=True, capture_output=True)
    assert load_state(state_file).live is None, "git revert is the rollback of the state"


K8S_COMMIT = ("--commit", "--manifests", "deploy/k8s")  # relative to the repository, as the workflow runs it


def test_kubernetes_release_commits_state_and_manifests_together_and_reverts_as_one(state_file: Path) -> None:
    """What the release workflow does for kubernetes-gitops: one commit per release, rollback = its revert."""
    git = init_repo(state_file)
    repo = state_file.parent.parent
    manifests = repo / "deploy" / "k8s"
    for tag in (TAG_A, TAG_B):
        done = deploy(
            "--state", str(state_file), "set", "--bento", tag, "--no-verify", *K8S_COMMIT, env=GIT_ENV, cwd=repo
        )
        assert done.returncode == 0, done.stderr
    shown = subprocess.run([*git, "show", "--name-only", "--format=%s", "HEAD"], capture_output=True, text=True)
    subject, *files = shown.stdout.split("\n")
    assert subject == f"deploy: {TAG_B} -> green (live: green)"
    assert [name for name in files if name] == [
        "bentos/deployment.yaml",
        "deploy/k8s/deployment-green.yaml",
        "deploy/k8s/kustomization.yaml",
        "deploy/k8s/service-preview.yaml",
        "deploy/k8s/service.yaml",
    ]
    assert subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout == ""

    def selector() -> str:
        return str(yaml.safe_load((manifests / "service.yaml").read_text())["spec"]["selector"]["gitops-ml/slot"])

    assert selector() == "green"
    last = subprocess.run([*git, "log", "-1", "--format=%H", "--", "deploy/k8s"], capture_output=True, text=True)
    subprocess.run([*git, "revert", "--no-edit", last.stdout.strip()], check=True, capture_output=True)
    assert selector() == "blue" and load_state(state_file).live == "blue"
    check = deploy("--state", str(state_file), "render-k8s", "-o", str(manifests), "--check")
    assert check.returncode == 0, check.stderr


def test_no_commit_when_the_manifests_cannot_be_rendered(state_file: Path) -> None:
    git = init_repo(state_file)
    repo = state_file.parent.parent
    done = deploy(
        "--state", str(state_file), "set", "--bento", TAG_A, "--no-verify", "--no-promote", *K8S_COMMIT, cwd=repo
    )
    assert done.returncode == 2 and "nothing is live" in done.stderr
    log = subprocess.run([*git, "log", "--format=%s"], capture_output=True, text=True, check=True).stdout
    assert log.splitlines() == ["init"]


@pytest.mark.parametrize(
    ("target", "problem"),
    [({"kind": "heroku"}, "target.kind"), ({"kind": "local", "runner_label": "a, b"}, "target.runner_label")],
)
def test_a_deploy_target_outside_the_two_is_refused(target: dict, problem: str) -> None:
    with pytest.raises(DeployError, match=problem):
        parse_state({**raw_state(), "target": target})


def test_set_takes_the_packaged_bento_only_when_its_gate_passed(state_file: Path, tmp_path: Path) -> None:
    report = tmp_path / "package.json"
    report.write_text(json.dumps({"bento_tag": TAG_A, "gate_passed": False, "model_version": "3"}))
    refused = deploy("--state", str(state_file), "set", "--package-report", str(report), "--no-verify")
    assert refused.returncode == 2 and "gate did not pass" in refused.stderr
    report.write_text(json.dumps({"bento_tag": TAG_A, "gate_passed": True, "model_version": "3"}))
    taken = deploy("--state", str(state_file), "set", "--package-report", str(report), "--no-verify")
    assert taken.returncode == 0, taken.stderr
    assert load_state(state_file).slots["blue"].bento == TAG_A


def test_unknown_bento_tag_is_refused_before_the_file_changes(state_file: Path, tmp_path: Path) -> None:
    before = state_file.read_text()
    result = deploy(
        "--state",
        str(state_file),
        "set",
        "--bento",
        "fraud_svc:doesnotexist",
        env={"BENTOML_HOME": str(tmp_path / "empty-store")},
    )
    assert result.returncode == 2
    assert "not in the local bento store" in result.stderr
    assert state_file.read_text() == before


def test_apply_with_nothing_live_does_nothing(state_file: Path) -> None:
    result = deploy("--state", str(state_file), "apply")
    assert result.returncode == 0 and "nothing to apply" in result.stdout


def test_status_shows_both_slots(state_file: Path) -> None:
    update_state_file(state_file, live="blue", bentos={"blue": TAG_A})
    result = deploy(
        "--state", str(state_file), "status", "--json", env={"BENTOML_HOME": str(state_file.parent / "store")}
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["desired_live"] == "blue" and report["in_sync"] is False and report["proxy"] is None
    assert report["slots"]["blue"]["desired_bento"] == TAG_A and not report["slots"]["blue"]["running"]


@pytest.mark.parametrize(
    "expected, actual, found",
    [
        ({"p": 0.5, "ok": True}, {"p": 0.5 + 1e-9, "ok": True}, 0),
        ({"p": 0.5}, {"p": 0.51}, 1),
        ({"ok": False}, {"ok": 0}, 1),
        ({"a": [1, 2]}, {"a": [1]}, 1),
        ({"a": 1}, {"a": 1, "b": 2}, 1),
        ({"a": 1, "c": 3}, {}, 2),
        ({"m": "model:1"}, {"m": "model:2"}, 1),
        ({"x": [{"p": 0.1}, {"p": 0.2}]}, {"x": [{"p": 0.1}, {"p": 0.3}]}, 1),
    ],
)
def test_smoke_answers_are_compared_recursively_with_tolerance(expected, actual, found) -> None:
    assert len(differences(expected, actual, atol=1e-6)) == found


@pytest.mark.parametrize("shadow_port", [None, 3001])
def test_nginx_config_listens_on_loopback_and_names_the_slot(tmp_path: Path, shadow_port: int | None) -> None:
    conf = render_conf(tmp_path, 8080, 3002, "green", TAG_B, shadow_port)
    assert "listen 127.0.0.1:8080;" in conf and "server 127.0.0.1:3002" in conf
    assert "X-Deploy-Slot green" in conf and TAG_B in conf
    assert f'return 200 "{status_line("green", TAG_B, shadow_port)}' in conf
    mirrors = [
        "mirror /_shadow;",
        "server 127.0.0.1:3001",
        "proxy_pass http://shadow_slot$request_uri;",
        "$request_body",
    ]
    if shadow_port is None:  # request bodies are logged only while shadowing
        assert not [line for line in mirrors if line in conf]
    else:
        assert all(line in conf for line in mirrors)


@pytest.mark.slow  # the slow tier claims nginx: without it this fails, with the install line
@pytest.mark.parametrize("shadow_port", [None, 3001])
def test_nginx_accepts_the_rendered_config(tmp_path: Path, shadow_port: int | None) -> None:
    try:
        nginx = nginx_binary()
    except DeployError as error:
        pytest.fail(f"{error} (apt-get install -y nginx)")
    (tmp_path / "temp").mkdir()
    (tmp_path / "nginx.conf").write_text(render_conf(tmp_path, 8080, 3002, "green", TAG_B, shadow_port))
    command = [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")]
    tested = subprocess.run(command, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stderr


def test_a_taken_port_is_named_in_the_error() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert port_holder(port) is not None
        with pytest.raises(DeployError, match=f"port {port} for the green slot"):
            require_free_port(port, "green slot")
    assert port_holder(port) is None


def test_the_load_generator_refuses_other_hosts() -> None:
    require_loopback("http://127.0.0.1:8080/predict")
    with pytest.raises(ValueError, match="loopback"):
        require_loopback("http://10.0.0.7:8080/predict")
    with pytest.raises(ValueError, match="loopback"):
        LoadRun("http://example.com/predict", {}, requests=10, max_seconds=1)


def test_rollout_figures_from_samples() -> None:
    samples = [Sample(0.0 + i, 0.01 + i, 200, "blue") for i in range(5)]
    samples += [
        Sample(5.0, 5.2, 200, "blue"),
        Sample(5.1, 5.15, 200, "green"),
        Sample(6.0, 6.02, 200, "green"),
    ]
    samples += [Sample(6.5, 6.6, 0, None, "ConnectError")]
    report = summarize(samples, window=(4.5, 6.0), new_slot="green")
    assert report["requests"] == 9 and report["failed"] == 1
    assert report["by_slot"] == {"blue": 6, "green": 2, "none": 1}
    assert report["first_on_new_s"] == pytest.approx(0.65) and report["all_on_new_s"] == pytest.approx(0.7)
    assert report["window_requests"] == 3
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([], 99) is None
