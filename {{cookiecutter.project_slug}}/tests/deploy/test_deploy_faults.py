"""The local engine's refusals: every port checked before anything starts, nothing left running, each an event.

No bento and no nginx: a stand-in slot server (it answers /readyz) takes the place of `bentoml serve`, so
that an engine that started the slot before finding the proxy port taken would leave it running here.
"""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import yaml

from {{ cookiecutter.package_name }}.deploy import engine
from {{ cookiecutter.package_name }}.deploy.checks import BentoInfo
from {{ cookiecutter.package_name }}.deploy.engine import LocalEngine, state_dir_for
from {{ cookiecutter.package_name }}.deploy.runtime import Runtime, free_ports, port_holder
from tools.deploy import main as deploy

ROOT = Path(__file__).resolve().parents[2]
TAG = "fraud_svc:aaa111"
STANDIN_SLOT = textwrap.dedent(
    """
    import http.server, sys

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ready).serve_forever()
    """
)


@pytest.fixture
def state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Blue live with TAG on free ports; TAG is "in the store", its server a stand-in; nginx must never run."""
    raw = yaml.safe_load((ROOT / "bentos" / "deployment.yaml").read_text(encoding="utf-8"))
    blue, green, proxy = free_ports(3)
    raw["live"] = "blue"
    raw["slots"] = {"blue": {"bento": TAG, "port": blue}, "green": {"bento": None, "port": green}}
    raw["proxy"]["port"] = proxy
    raw["checks"]["smoke"] = False
    path = tmp_path / "bentos" / "deployment.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setattr(engine, "bento_info", lambda tag: BentoInfo(tag, tmp_path, "1", ()))
    monkeypatch.setattr(engine, "bento_command", lambda tag, port: [sys.executable, "-c", STANDIN_SLOT, str(port)])
    nginx = tmp_path / "nginx"
    nginx.write_text("#!/bin/sh\necho 'this nginx refuses every config' >&2\nexit 1\n", encoding="utf-8")
    nginx.chmod(0o755)
    monkeypatch.setenv("DEPLOY_NGINX", str(nginx))
    return path


def children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def refusals(state_file: Path) -> list[dict[str, object]]:
    """The engine's events, their times zeroed."""
    lines = (state_dir_for(state_file) / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) | {"time": 0} for line in lines]


@pytest.mark.parametrize("taken", ["proxy", "blue"])
def test_a_taken_port_refuses_apply_before_anything_starts(
    state_file: Path, capsys: pytest.CaptureFixture[str], taken: str
) -> None:
    raw = yaml.safe_load(state_file.read_text(encoding="utf-8"))
    port = raw["proxy"]["port"] if taken == "proxy" else raw["slots"]["blue"]["port"]
    what = "proxy (proxy.port)" if taken == "proxy" else "blue slot (slots.blue.port)"
    before = children()
    try:
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            code = deploy(["--state", str(state_file), "apply"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(f"[deploy] ERROR: port {port} for the {what} is already in use"), err
        assert not children() - before, "the refused apply left processes running"
        assert port_holder(raw["slots"]["blue"]["port"]) is None, "the slot's port is still held"
        assert Runtime.load(state_dir_for(state_file)).slots == {}
        reason = err.removeprefix("[deploy] ERROR: ").strip()
        assert refusals(state_file) == [{"time": 0, "event": "refused", "live": "blue", "bento": TAG, "reason": reason}]
    finally:
        LocalEngine(state_file).stop()  # what a broken engine left behind, so a red run leaks nothing


def test_a_slot_the_proxy_does_not_take_is_stopped(state_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The slot starts and passes its checks, then nginx refuses its config: the slot never took traffic, so
    the refused apply stops it, says so, and records the refusal."""
    before = children()
    try:
        assert deploy(["--state", str(state_file), "apply"]) == 2
        err = capsys.readouterr().err
        assert "nginx" in err and f"blue ({TAG}) stopped: it never took traffic" in err, err
        assert not children() - before, "the refused apply left the slot running"
        events = refusals(state_file)
        assert [event["event"] for event in events] == ["stop", "refused"], events
        assert "stopped: it never took traffic" in str(events[-1]["reason"])
    finally:
        LocalEngine(state_file).stop()
