"""What the local engine is running right now: processes, ports, logs, under `bentos/.state/` (git-ignored).

The desired state lives in git; this is only the engine's memory of what it started, so that `apply`,
`status`, `rollback` and `stop` find their processes again. A process is identified by pid plus
start time, so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from pydantic import BaseModel

from .state import DeployError, SlotName

LOOPBACK = "127.0.0.1"


class Process(BaseModel):
    """A process we started: pid plus its start time (psutil create_time)."""

    pid: int
    create_time: float

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return abs(proc.create_time() - self.create_time) < 0.5 and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    @classmethod
    def of(cls, pid: int) -> Process:
        return cls(pid=pid, create_time=psutil.Process(pid).create_time())


class SlotRuntime(BaseModel):
    """A running slot: its bento, port, process group leader, log, and when it retires (if idle)."""

    bento: str
    port: int
    process: Process
    log: str
    started_at: float
    retire_after: float | None = None
    # Took live traffic or passed its shadow check: switching back to it (a rollback) is not shadowed again.
    proven: bool = False
    # Remembered from the bento store at start, so a warm switch back needs no store lookup.
    bento_path: str = ""
    model_version: str | None = None


class ProxyRuntime(BaseModel):
    """The running nginx master and where it sends traffic."""

    process: Process
    port: int
    live: SlotName
    bento: str


class Runtime(BaseModel):
    """Everything the engine started; saved as bentos/.state/runtime.json."""

    slots: dict[SlotName, SlotRuntime] = {}
    proxy: ProxyRuntime | None = None
    reaper: Process | None = None

    @classmethod
    def load(cls, state_dir: Path) -> Runtime:
        path = state_dir / "runtime.json"
        runtime = cls.model_validate_json(path.read_text()) if path.is_file() else cls()
        runtime.slots = {name: slot for name, slot in runtime.slots.items() if slot.process.alive()}
        if runtime.proxy is not None and not runtime.proxy.process.alive():
            runtime.proxy = None
        if runtime.reaper is not None and not runtime.reaper.alive():
            runtime.reaper = None
        return runtime

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        scratch = state_dir / "runtime.json.tmp"
        scratch.write_text(self.model_dump_json(indent=2))
        scratch.replace(state_dir / "runtime.json")


@contextlib.contextmanager
def locked(state_dir: Path, timeout_s: float = 600.0) -> Iterator[None]:
    """One engine command at a time per project (apply, rollback, stop and the grace reaper)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "lock", "w") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DeployError(f"another deploy command holds {state_dir / 'lock'}") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def port_holder(port: int) -> str | None:
    """None when 127.0.0.1:port is free to bind, else who holds it (as far as we can tell)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
            return None
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                return f"cannot bind ({error.strerror})"
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
    except psutil.Error:
        pass
    return "another process"


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that were free a moment ago (all held open together, so no repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def require_free_port(port: int, what: str) -> None:
    """A clear error, before anything starts, when a port we need is taken."""
    holder = port_holder(port)
    if holder is not None:
        raise DeployError(
            f"port {port} for the {what} is already in use by {holder}: stop that process or choose another "
            "port in bentos/deployment.yaml"
        )


def spawn(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> Process:
    """Start a command in its own session (so the whole tree can be stopped), output to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            close_fds=True,
        )
    return Process.of(child.pid)


def stop(process: Process, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL what is left. A process already gone is fine."""
    if not process.alive():
        _reap(process.pid)
        return
    try:
        members = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.Error:
        members = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    _, left = psutil.wait_procs(members, timeout=timeout_s)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=5)
    _reap(process.pid)


def _reap(pid: int) -> None:
    # When this Python process started it (tests, one long session), collect the zombie.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def exit_description(process: Process, log_path: Path, lines: int = 15) -> str:
    """Why a process is gone (or not ready): its exit status where we can see it, and its log tail."""
    status = "still running" if process.alive() else "exited"
    with contextlib.suppress(ChildProcessError, OSError):
        pid, code = os.waitpid(process.pid, os.WNOHANG)
        if pid:
            status = f"exited with code {os.waitstatus_to_exitcode(code)}"
    return f"process {process.pid} {status}; last lines of {log_path}:\n{log_tail(log_path, lines)}"


def log_tail(path: Path, lines: int = 15) -> str:
    """The end of a log file, indented, for error messages."""
    if not path.is_file():
        return "    (no log)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text) or "    (empty log)"


def record_event(state_dir: Path, event: dict[str, object]) -> None:
    """Append one JSON line to bentos/.state/events.jsonl: the engine's own audit trail next to git's."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "events.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"time": time.time(), **event}) + "\n")
