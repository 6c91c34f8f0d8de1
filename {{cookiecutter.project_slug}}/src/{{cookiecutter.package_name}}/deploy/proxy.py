"""The traffic switch: nginx (from the OS packages) in front of both slots, reconfigured and reloaded.

nginx reloads gracefully: new worker processes take new connections with the new upstream while the
old workers finish the requests they hold, then exit. So a switch drops no request, and "all traffic
on the new slot" is the moment the last old worker is gone. Every config is tested with `nginx -t`
before it is used, and the answer of the proxy itself (`/_deploy`) confirms which slot is live.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from .runtime import LOOPBACK, Process, ProxyRuntime, exit_description, require_free_port, spawn
from .state import DeployError, SlotName

NGINX_ENV = "DEPLOY_NGINX"  # path to the nginx binary, when it is not on PATH or /usr/sbin
SLOT_HEADER = "X-Deploy-Slot"
STATUS_PATH = "/_deploy"


class ProxyError(DeployError):
    """nginx refused a config or a reload; traffic stays where it was."""


def nginx_binary() -> str:
    """Where nginx is: $DEPLOY_NGINX, PATH, or the usual sbin folders."""
    candidates = [
        os.environ.get(NGINX_ENV),
        shutil.which("nginx"),
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise DeployError(
        "nginx not found: the local engine switches traffic with nginx from the OS packages "
        "(`apt-get install -y nginx`, `brew install nginx`), or set DEPLOY_NGINX=/path/to/nginx"
    )


def render_conf(prefix: Path, listen_port: int, upstream_port: int, slot: SlotName, bento: str) -> str:
    """The whole nginx.conf: loopback only, one upstream (the live slot), keep-alive both ways."""
    p = prefix.resolve()
    lines = [
        "# Written by the deploy engine (tools/deploy.py) on every switch; edits are overwritten.",
        "daemon off;",
        "worker_processes 1;",
        f"pid {p}/nginx.pid;",
        f"error_log {p}/error.log warn;",
        "worker_shutdown_timeout 60s;",
        "events {",
        "    worker_connections 1024;",
        "}",
        "http {",
        "    access_log off;",
        f"    client_body_temp_path {p}/temp/body;",
        f"    proxy_temp_path {p}/temp/proxy;",
        f"    fastcgi_temp_path {p}/temp/fastcgi;",
        f"    uwsgi_temp_path {p}/temp/uwsgi;",
        f"    scgi_temp_path {p}/temp/scgi;",
        # No client keep-alive: a reload retires the old workers, and nginx closes their idle keep-alive
        # connections at once; a request that arrives on one at that instant is reset. Without idle
        # connections nothing is lost (a new loopback connection costs well under a millisecond).
        "    keepalive_timeout 0;",
        "    upstream live_slot {",
        f"        server {LOOPBACK}:{upstream_port} max_fails=0;",
        "        keepalive 32;",
        # Close idle upstream connections before the bento's server does (uvicorn: 5 s), so nginx never
        # sends a request down a connection the other side is closing.
        "        keepalive_timeout 4s;",
        "    }",
        "    server {",
        f"        listen {LOOPBACK}:{listen_port};",
        "        server_name _;",
        f"        add_header {SLOT_HEADER} {slot} always;",
        f'        add_header X-Deploy-Bento "{bento}" always;',
        f"        location = {STATUS_PATH} " + "{",
        "            default_type text/plain;",
        f'            return 200 "{slot} {bento}\\n";',
        "        }",
        "        location / {",
        "            proxy_pass http://live_slot;",
        "            proxy_http_version 1.1;",
        '            proxy_set_header Connection "";',
        "            proxy_set_header Host $host;",
        "            proxy_read_timeout 60s;",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SwitchTiming:
    """Seconds from the reload to the proxy answering with the new slot, and to the old workers being gone."""

    confirmed_s: float
    drained_s: float
    drained: bool


class Nginx:
    """One nginx under bentos/.state/nginx: start, then switch (test, swap, reload, confirm, drain)."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self.prefix = state_dir / "nginx"
        self.conf = self.prefix / "nginx.conf"
        self.log = self.prefix / "error.log"
        self.port = port

    def _run(self, *args: str, conf: Path | None = None) -> subprocess.CompletedProcess[str]:
        command = [
            nginx_binary(),
            "-p",
            str(self.prefix.resolve()),
            "-c",
            str((conf or self.conf).resolve()),
            "-e",
            str(self.log.resolve()),
            *args,
        ]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def _write_tested(self, slot: SlotName, upstream_port: int, bento: str) -> Path:
        (self.prefix / "temp").mkdir(parents=True, exist_ok=True)
        candidate = self.prefix / "nginx.conf.new"
        candidate.write_text(render_conf(self.prefix, self.port, upstream_port, slot, bento))
        tested = self._run("-t", conf=candidate)
        if tested.returncode != 0:
            raise ProxyError(f"nginx rejected the new config ({candidate}):\n{tested.stderr.strip()}")
        return candidate

    def start(self, slot: SlotName, upstream_port: int, bento: str) -> ProxyRuntime:
        """First deployment (or after `stop`): start nginx on the proxy port, pointing at `slot`."""
        require_free_port(self.port, "proxy (proxy.port)")
        self._write_tested(slot, upstream_port, bento).replace(self.conf)
        command = [
            nginx_binary(),
            "-p",
            str(self.prefix.resolve()),
            "-c",
            str(self.conf.resolve()),
            "-e",
            str(self.log.resolve()),
        ]
        process = spawn(command, self.prefix / "master.log")
        try:
            self.confirm(slot, timeout_s=10.0, process=process)
        except DeployError:
            from .runtime import stop

            stop(process)
            raise
        return ProxyRuntime(process=process, port=self.port, live=slot, bento=bento)

    def switch(
        self, runtime: ProxyRuntime, slot: SlotName, upstream_port: int, bento: str, drain_timeout_s: float
    ) -> SwitchTiming:
        """Point the running nginx at `slot`. On any failure the previous config is put back and reloaded."""
        candidate = self._write_tested(slot, upstream_port, bento)
        old_workers = self.workers(runtime.process)
        backup = self.prefix / "nginx.conf.prev"
        shutil.copyfile(self.conf, backup)
        candidate.replace(self.conf)
        start = time.monotonic()
        try:
            reloaded = self._run("-s", "reload")
            if reloaded.returncode != 0:
                raise ProxyError(
                    f"nginx reload failed (exit {reloaded.returncode}): {(reloaded.stderr or reloaded.stdout).strip()}"
                )
            self.confirm(slot, timeout_s=10.0, process=runtime.process)
        except DeployError:
            backup.replace(self.conf)
            self._run("-s", "reload")
            raise
        confirmed = time.monotonic() - start
        drained = self.wait_exit(old_workers, drain_timeout_s)
        return SwitchTiming(confirmed_s=confirmed, drained_s=time.monotonic() - start, drained=drained)

    def confirm(self, slot: SlotName, timeout_s: float, process: Process) -> None:
        """Wait until the proxy itself says `slot` is live (new connections reach the new workers)."""
        deadline = time.monotonic() + timeout_s
        seen = "no answer"
        while time.monotonic() < deadline:
            if not process.alive():
                raise ProxyError(f"nginx is not running: {exit_description(process, self.log)}")
            try:
                answer = httpx.get(f"http://{LOOPBACK}:{self.port}{STATUS_PATH}", timeout=2.0)
                seen = answer.text.strip()
                if answer.status_code == 200 and seen.split(" ")[0] == slot:
                    return
            except httpx.HTTPError as error:
                seen = repr(error)
            time.sleep(0.05)
        raise ProxyError(f"nginx did not switch to {slot} within {timeout_s:g} s (it answers {seen!r}); see {self.log}")

    @staticmethod
    def workers(master: Process) -> list[psutil.Process]:
        try:
            return psutil.Process(master.pid).children()
        except psutil.Error:
            return []

    @staticmethod
    def wait_exit(processes: list[psutil.Process], timeout_s: float) -> bool:
        """True when every old worker has exited: no request is being served by the old config any more."""
        _, alive = psutil.wait_procs(processes, timeout=timeout_s)
        return not alive
