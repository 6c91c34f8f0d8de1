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

from ..serving import SHADOW_HEADER
from .runtime import LOOPBACK, Process, ProxyRuntime, exit_description, require_free_port, spawn
from .state import DeployError, SlotName

NGINX_ENV = "DEPLOY_NGINX"  # path to the nginx binary, when it is not on PATH or /usr/sbin
SLOT_HEADER = "X-Deploy-Slot"
STATUS_PATH = "/_deploy"
SHADOW_PATH = "/_shadow"
# While shadowing: every request the live slot answers (with its body, to re-send for the comparison),
# and every mirrored copy the new slot answered; both carry nginx's $request_id, so they pair up.
SHADOW_REQUESTS_LOG = "shadow-requests.log"
SHADOW_MIRROR_LOG = "shadow-mirror.log"


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


def status_line(slot: SlotName, bento: str, shadow_port: int | None = None) -> str:
    """What the proxy answers on STATUS_PATH: which slot is live, and where it mirrors to, if anywhere."""
    return f"{slot} {bento}" + (f" shadow {shadow_port}" if shadow_port is not None else "")


def render_conf(
    prefix: Path, listen_port: int, upstream_port: int, slot: SlotName, bento: str, shadow_port: int | None = None
) -> str:
    """The whole nginx.conf: loopback only, one upstream (the live slot), keep-alive both ways.

    With `shadow_port`, every request is also mirrored there (nginx's `mirror`); the client gets the live
    slot's answer only, and the mirrored copy's answer is logged and dropped.
    """
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
        *_upstream("live_slot", upstream_port),
        *(_upstream("shadow_slot", shadow_port) if shadow_port is not None else []),
        *(_shadow_log_formats() if shadow_port is not None else []),
        "    server {",
        f"        listen {LOOPBACK}:{listen_port};",
        "        server_name _;",
        f"        add_header {SLOT_HEADER} {slot} always;",
        f'        add_header X-Deploy-Bento "{bento}" always;',
        f"        location = {STATUS_PATH} " + "{",
        "            default_type text/plain;",
        f'            return 200 "{status_line(slot, bento, shadow_port)}\\n";',
        "        }",
        *(_shadow_location(p) if shadow_port is not None else []),
        "        location / {",
        *(_mirror_directives(p) if shadow_port is not None else []),
        *_proxied("http://live_slot"),
        "            proxy_read_timeout 60s;",
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _proxied(target: str) -> list[str]:
    """Pass the request on over keep-alive upstream connections, with the client's Host."""
    return [
        f"            proxy_pass {target};",
        "            proxy_http_version 1.1;",
        '            proxy_set_header Connection "";',
        "            proxy_set_header Host $host;",
    ]


def _upstream(name: str, port: int) -> list[str]:
    return [
        f"    upstream {name} " + "{",
        f"        server {LOOPBACK}:{port} max_fails=0;",
        "        keepalive 32;",
        # Close idle upstream connections before the bento's server does (uvicorn: 5 s), so nginx never
        # sends a request down a connection the other side is closing.
        "        keepalive_timeout 4s;",
        "    }",
    ]


def _shadow_log_formats() -> list[str]:
    return [
        "    log_format shadow_request escape=json",
        '        \'{"id":"$request_id","method":"$request_method","uri":"$request_uri","status":"$status",\'',
        '        \'"body":"$request_body"}\';',
        "    log_format shadow_mirror escape=json",
        '        \'{"id":"$request_id","uri":"$request_uri","status":"$upstream_status"}\';',
    ]


def _mirror_directives(prefix: Path) -> list[str]:
    return [
        f"            mirror {SHADOW_PATH};",
        "            mirror_request_body on;",
        # The body stays in memory (prediction requests are far smaller), so the log can hold it.
        "            client_body_buffer_size 1m;",
        f"            access_log {prefix}/{SHADOW_REQUESTS_LOG} shadow_request;",
    ]


def _shadow_location(prefix: Path) -> list[str]:
    return [
        f"        location = {SHADOW_PATH} " + "{",
        "            internal;",
        "            log_subrequest on;",
        f"            access_log {prefix}/{SHADOW_MIRROR_LOG} shadow_mirror;",
        *_proxied("http://shadow_slot$request_uri"),
        f"            proxy_set_header {SHADOW_HEADER} 1;  # a copy: answered, not logged by the service",
        "            proxy_connect_timeout 2s;",
        "            proxy_read_timeout 10s;",
        "        }",
    ]


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

    def _write_tested(self, slot: SlotName, upstream_port: int, bento: str, shadow_port: int | None = None) -> Path:
        (self.prefix / "temp").mkdir(parents=True, exist_ok=True)
        candidate = self.prefix / "nginx.conf.new"
        candidate.write_text(render_conf(self.prefix, self.port, upstream_port, slot, bento, shadow_port))
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
            self.confirm(status_line(slot, bento), timeout_s=10.0, process=process)
        except DeployError:
            from .runtime import stop

            stop(process)
            raise
        return ProxyRuntime(process=process, port=self.port, live=slot, bento=bento)

    def switch(
        self,
        runtime: ProxyRuntime,
        slot: SlotName,
        upstream_port: int,
        bento: str,
        drain_timeout_s: float,
        shadow_port: int | None = None,
    ) -> SwitchTiming:
        """Point the running nginx at `slot` (mirroring to `shadow_port`, if given). On any failure the
        previous config is put back and reloaded."""
        candidate = self._write_tested(slot, upstream_port, bento, shadow_port)
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
            self.confirm(status_line(slot, bento, shadow_port), timeout_s=10.0, process=runtime.process)
        except DeployError:
            backup.replace(self.conf)
            self._run("-s", "reload")
            raise
        confirmed = time.monotonic() - start
        drained = self.wait_exit(old_workers, drain_timeout_s)
        return SwitchTiming(confirmed_s=confirmed, drained_s=time.monotonic() - start, drained=drained)

    def confirm(self, expected: str, timeout_s: float, process: Process) -> None:
        """Wait until the proxy itself answers `expected` (a status_line): new connections reach the new workers."""
        deadline = time.monotonic() + timeout_s
        seen = "no answer"
        while time.monotonic() < deadline:
            if not process.alive():
                raise ProxyError(f"nginx is not running: {exit_description(process, self.log)}")
            try:
                answer = httpx.get(f"http://{LOOPBACK}:{self.port}{STATUS_PATH}", timeout=2.0)
                seen = answer.text.strip()
                if answer.status_code == 200 and seen == expected:
                    return
            except httpx.HTTPError as error:
                seen = repr(error)
            time.sleep(0.05)
        raise ProxyError(
            f"nginx did not switch to {expected!r} within {timeout_s:g} s (it answers {seen!r}); see {self.log}"
        )

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
