"""The local engine: make this machine match bentos/deployment.yaml, blue-green, behind nginx.

`apply` starts the live slot's bento if it is not already running it (`bentoml serve` on its own
loopback port), waits for /readyz, runs the bento's smoke requests, and only then reloads nginx to
send traffic there. With `checks.shadow.enabled`, a new slot first answers mirrored live traffic for a
window and must agree with the live slot (deploy/shadow.py). The slot that was live keeps running for
`checks.grace_period_s`, so a rollback within the grace period is a proxy switch, not a redeploy. Any
failed check raises DeployError before the proxy is sent anywhere new: traffic stays where it was.
Every port apply will bind is checked before it starts anything; a refused apply leaves nothing it
started running, and every refusal is an event in bentos/.state/events.jsonl.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..stage import TELEMETRY_OFF
from . import runtime as rt
from .checks import BentoInfo, bento_info, run_smoke, wait_ready
from .proxy import Nginx, nginx_binary
from .runtime import LOOPBACK, Runtime, SlotRuntime
from .shadow import ShadowReport, run_shadow
from .state import SLOTS, DeployError, DeploymentState, SlotName, other

log = logging.getLogger(__name__)


def state_dir_for(state_file: Path) -> Path:
    """Runtime state sits next to the state file: bentos/.state/."""
    return state_file.resolve().parent / ".state"


@dataclass
class ApplyReport:
    """What apply did and how long each step took (seconds since the command started)."""

    live: SlotName | None
    bento: str | None
    action: str
    timings: dict[str, float] = field(default_factory=dict)
    shadow: ShadowReport | None = None

    def lines(self) -> list[str]:
        steps = ", ".join(f"{name} {value:.2f}s" for name, value in self.timings.items())
        shadowed = f"shadow: {self.shadow.summary()}" if self.shadow else ""
        return [f"{self.action}", shadowed, f"timings: {steps}" if steps else ""]


def bento_command(tag: str, port: int) -> list[str]:
    """How a slot is served: `bentoml serve TAG` on loopback only."""
    return [sys.executable, "-m", "bentoml", "serve", tag, "--host", LOOPBACK, "--port", str(port)]


class LocalEngine:
    """Apply, roll back, report and stop one project's slots on this machine."""

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self.state_dir = state_dir_for(state_file)

    # -- apply ---------------------------------------------------------------------------------------

    def apply(self, state: DeploymentState) -> ApplyReport:
        """Make the slots and the proxy match `state`; raise DeployError (traffic unchanged) on failure."""
        try:
            return self._apply(state)
        except DeployError as error:  # the audit trail holds the refusals too, not only what happened
            live = state.live
            bento = state.slots[live].bento if live is not None else None
            rt.record_event(self.state_dir, {"event": "refused", "live": live, "bento": bento, "reason": str(error)})
            raise

    def _apply(self, state: DeploymentState) -> ApplyReport:
        started = time.monotonic()
        if state.live is None:
            return ApplyReport(
                None,
                None,
                "nothing is live in the state file: nothing to apply (`deploy.py set --bento TAG` first)",
            )
        nginx_binary()  # fail before starting anything when the proxy cannot run
        target = state.live
        slot = state.slots[target]
        assert slot.bento is not None  # guaranteed by DeploymentState validation
        with rt.locked(self.state_dir):
            runtime = Runtime.load(self.state_dir)
            self._retire_expired(runtime)
            self._require_ports(runtime, state)
            timings: dict[str, float] = {}
            current = runtime.proxy.live if runtime.proxy else None
            running = runtime.slots.get(target)
            bento = _known(running, slot.bento) or bento_info(slot.bento)
            if running is not None and (running.bento != bento.tag or running.port != slot.port):
                if current == target:
                    raise DeployError(
                        f"{target} is live with {running.bento} and the state asks for {bento.tag} in the "
                        "same slot: replacing the live slot in place would drop traffic. Put the new bento "
                        f"in the idle slot (`deploy.py set --bento {bento.tag}`)"
                    )
                self._stop_slot(runtime, target, reason=f"replaced by {bento.tag}")
                running = None
            started_here = running is None
            if running is None:
                running = self._start_slot(target, slot.port, bento, state)
                runtime.slots[target] = running
                runtime.save(self.state_dir)
                timings["started"] = time.monotonic() - started
            try:
                self._check(running, bento, state)
                timings["checked"] = time.monotonic() - started
                shadow = self._shadow(runtime, state, current, target, bento)
            except DeployError:
                if current != target:  # a slot that never took traffic goes away with its failure
                    self._stop_slot(runtime, target, reason="failed its checks")
                raise
            if shadow is not None:
                timings["shadowed"] = time.monotonic() - started
            try:
                action = self._route(runtime, state, target, bento, timings, started)
            except DeployError as error:
                if not started_here or current == target:
                    raise
                self._stop_slot(runtime, target, reason="the proxy did not take it")
                runtime.save(self.state_dir)
                raise DeployError(f"{error}\n{target} ({bento.tag}) stopped: it never took traffic") from None
            running.proven = True
            self._settle_idle(runtime, state, previous_live=current)
            runtime.save(self.state_dir)
            rt.record_event(
                self.state_dir,
                {
                    "event": "apply",
                    "live": target,
                    "bento": bento.tag,
                    "action": action,
                    "timings": timings,
                    "shadow": shadow.as_dict() if shadow else None,
                },
            )
            self._ensure_reaper(runtime)
            timings["total"] = time.monotonic() - started
            return ApplyReport(target, bento.tag, action, timings, shadow)

    def _require_ports(self, runtime: Runtime, state: DeploymentState) -> None:
        """Every port this apply will bind is free (or already ours), before anything starts."""
        assert state.live is not None
        if runtime.proxy is not None and runtime.proxy.port != state.proxy.port:
            raise DeployError(
                f"the proxy runs on port {runtime.proxy.port} but the state asks for "
                f"{state.proxy.port}: run `deploy.py stop` first to move it"
            )
        running, port = runtime.slots.get(state.live), state.slots[state.live].port
        if running is None or running.port != port:
            rt.require_free_port(port, f"{state.live} slot (slots.{state.live}.port)")
        if runtime.proxy is None:
            rt.require_free_port(state.proxy.port, "proxy (proxy.port)")

    def _start_slot(self, name: SlotName, port: int, bento: BentoInfo, state: DeploymentState) -> SlotRuntime:
        rt.require_free_port(port, f"{name} slot (slots.{name}.port)")
        log_path = self.state_dir / f"{name}.log"
        if log_path.exists():
            log_path.replace(log_path.with_suffix(".log.prev"))
        log.info("starting %s on %s:%d with %s", name, LOOPBACK, port, bento.tag)
        # Started from the project (bentos/deployment.yaml's parent), as `make serve` is: a relative
        # prediction log dir (conf/serve) lands in the project, where tools/monitor.py reads it.
        project = self.state_file.resolve().parent.parent
        process = rt.spawn(bento_command(bento.tag, port), log_path, env={**TELEMETRY_OFF, "PWD": str(project)})
        return SlotRuntime(
            bento=bento.tag,
            port=port,
            process=process,
            log=str(log_path),
            started_at=time.time(),
            bento_path=str(bento.path),
            model_version=bento.model_version,
        )

    def _check(self, running: SlotRuntime, bento: BentoInfo, state: DeploymentState) -> None:
        base = f"http://{LOOPBACK}:{running.port}"
        log_path = Path(running.log)
        try:
            wait_ready(
                base,
                state.checks.readyz_timeout_s,
                running.process.alive,
                lambda: rt.exit_description(running.process, log_path),
                log_path,
            )
            if state.checks.smoke:
                count = run_smoke(base, bento, state.checks.request_timeout_s)
                log.info("%d smoke request(s) passed on %s", count, base)
        except DeployError as error:
            raise DeployError(
                f"{bento.tag} failed its checks on port {running.port}, traffic not moved: {error}"
            ) from None

    def _shadow(
        self, runtime: Runtime, state: DeploymentState, current: SlotName | None, target: SlotName, bento: BentoInfo
    ) -> ShadowReport | None:
        """Mirror live traffic to a new slot and compare (checks.shadow); None when there is nothing to shadow.

        Not shadowed: the first deployment (no live traffic), a slot that is live already, and a slot that
        was live or passed before (a rollback within the grace period stays an instant switch).
        """
        settings = state.checks.shadow
        new = runtime.slots[target]
        live = runtime.slots.get(current) if current is not None else None
        if not settings.enabled or runtime.proxy is None or live is None or current == target or new.proven:
            return None
        print(
            f"shadow: mirroring live traffic on {current} to {target} ({bento.tag}) for {settings.window_s:g} s",
            file=sys.stderr,
            flush=True,
        )
        report = run_shadow(
            Nginx(self.state_dir, state.proxy.port),
            runtime.proxy,
            live.port,
            new.port,
            settings,
            state.proxy.drain_timeout_s,
            state.checks.request_timeout_s,
        )
        rt.record_event(self.state_dir, {"event": "shadow", "slot": target, "bento": bento.tag, **report.as_dict()})
        if not report.passed:
            raise DeployError(
                f"{bento.tag} disagrees with the live slot on shadowed traffic, traffic not moved: "
                + "; ".join(report.problems)
                + f"\nshadow: {report.summary()}"
            )
        new.proven = True
        return report

    def _route(
        self,
        runtime: Runtime,
        state: DeploymentState,
        target: SlotName,
        bento: BentoInfo,
        timings: dict[str, float],
        started: float,
    ) -> str:
        nginx = Nginx(self.state_dir, state.proxy.port)
        port = runtime.slots[target].port
        if runtime.proxy is None:
            runtime.proxy = nginx.start(target, port, bento.tag)
            timings["switched"] = time.monotonic() - started
            return f"{target} is live with {bento.tag} (proxy started on {LOOPBACK}:{state.proxy.port})"
        if runtime.proxy.live == target and runtime.proxy.bento == bento.tag:
            return f"{target} is already live with {bento.tag}: nothing to switch"
        previous = runtime.proxy.live
        try:
            timing = nginx.switch(runtime.proxy, target, port, bento.tag, state.proxy.drain_timeout_s)
        except DeployError as error:
            raise DeployError(f"{error}\ntraffic stays on {previous} ({runtime.proxy.bento})") from None
        runtime.proxy = runtime.proxy.model_copy(update={"live": target, "bento": bento.tag})
        reloaded = timings.get("shadowed", timings["checked"])  # when the switch began
        timings["switched"] = reloaded + timing.confirmed_s
        timings["drained"] = reloaded + timing.drained_s
        drained = "" if timing.drained else f" (old nginx workers still busy after {state.proxy.drain_timeout_s:g} s)"
        return f"switched traffic {previous} -> {target} ({bento.tag}){drained}"

    def _settle_idle(self, runtime: Runtime, state: DeploymentState, previous_live: SlotName | None) -> None:
        """The slot just left keeps running for the grace period; a stale idle slot stops now."""
        assert state.live is not None
        runtime.slots[state.live].retire_after = None  # live again: no longer retiring
        idle = other(state.live)
        running = runtime.slots.get(idle)
        if running is None:
            return
        if previous_live == idle:
            running.retire_after = time.time() + state.checks.grace_period_s
            if state.checks.grace_period_s == 0:
                self._stop_slot(runtime, idle, reason="grace period 0")
        elif running.retire_after is None and running.bento != state.slots[idle].bento:
            self._stop_slot(runtime, idle, reason="no longer in the state file")

    # -- grace period ----------------------------------------------------------------------------------

    def _retire_expired(self, runtime: Runtime) -> list[SlotName]:
        live = runtime.proxy.live if runtime.proxy else None
        expired = [
            name
            for name, slot in runtime.slots.items()
            if name != live and slot.retire_after is not None and slot.retire_after <= time.time()
        ]
        for name in expired:
            self._stop_slot(runtime, name, reason="grace period over")
        return expired

    def reap(self) -> float | None:
        """Stop idle slots past their grace period; return seconds until the next is due (None: none left)."""
        with rt.locked(self.state_dir):
            runtime = Runtime.load(self.state_dir)
            self._retire_expired(runtime)
            live = runtime.proxy.live if runtime.proxy else None
            due = [
                slot.retire_after
                for name, slot in runtime.slots.items()
                if name != live and slot.retire_after is not None
            ]
            if not due and runtime.reaper is not None and runtime.reaper.pid == os.getpid():
                runtime.reaper = None  # under the lock, so the next apply starts a fresh reaper
            runtime.save(self.state_dir)
            return max(0.0, min(due) - time.time()) if due else None

    def _ensure_reaper(self, runtime: Runtime) -> None:
        """A small detached process that stops the previous slot when its grace period ends."""
        pending = any(slot.retire_after is not None for slot in runtime.slots.values())
        if not pending or (runtime.reaper is not None and runtime.reaper.alive()):
            return
        package = __name__.rsplit(".", 1)[0]
        command = [sys.executable, "-m", f"{package}.reaper", str(self.state_file.resolve())]
        runtime.reaper = rt.spawn(command, self.state_dir / "reaper.log", env=_pythonpath())
        runtime.save(self.state_dir)

    def _stop_slot(self, runtime: Runtime, name: SlotName, reason: str) -> None:
        slot = runtime.slots.pop(name, None)
        if slot is None:
            return
        log.info("stopping %s (%s): %s", name, slot.bento, reason)
        rt.stop(slot.process)
        rt.record_event(self.state_dir, {"event": "stop", "slot": name, "bento": slot.bento, "reason": reason})

    # -- status / stop -----------------------------------------------------------------------------------

    def status(self, state: DeploymentState) -> dict[str, Any]:
        """Desired and running state of both slots and the proxy, with model versions and live health."""
        runtime = Runtime.load(self.state_dir)
        report: dict[str, Any] = {"desired_live": state.live, "proxy": None, "slots": {}}
        if runtime.proxy is not None:
            report["proxy"] = {
                "url": f"http://{LOOPBACK}:{runtime.proxy.port}",
                "pid": runtime.proxy.process.pid,
                "live": runtime.proxy.live,
                "bento": runtime.proxy.bento,
            }
        for name in SLOTS:
            desired = state.slots[name].bento
            running = runtime.slots.get(name)
            known = _known(running, desired)
            entry: dict[str, Any] = {
                "desired_bento": desired,
                "model_version": known.model_version if known else _model_version(desired),
                "port": state.slots[name].port,
                "running": running is not None,
                "live": runtime.proxy is not None and runtime.proxy.live == name,
            }
            if running is not None:
                entry.update(
                    running_bento=running.bento,
                    pid=running.process.pid,
                    port=running.port,
                    ready=_ready(running.port),
                    log=running.log,
                    retire_in_s=None
                    if running.retire_after is None
                    else round(max(0.0, running.retire_after - time.time()), 1),
                )
                if running.bento != desired:
                    entry["model_version"] = running.model_version
            report["slots"][name] = entry
        if state.live is None:
            report["in_sync"] = runtime.proxy is None
        else:
            report["in_sync"] = (
                runtime.proxy is not None
                and runtime.proxy.live == state.live
                and runtime.proxy.bento == state.slots[state.live].bento
            )
        return report

    def stop(self) -> list[str]:
        """Stop everything this engine started: proxy first (no traffic to a dying slot), slots, reaper."""
        stopped: list[str] = []
        with rt.locked(self.state_dir):
            runtime = Runtime.load(self.state_dir)
            if runtime.proxy is not None:
                rt.stop(runtime.proxy.process)
                stopped.append(f"proxy (pid {runtime.proxy.process.pid})")
                runtime.proxy = None
            for name in list(runtime.slots):
                stopped.append(f"{name} ({runtime.slots[name].bento}, pid {runtime.slots[name].process.pid})")
                self._stop_slot(runtime, name, reason="deploy.py stop")
            if runtime.reaper is not None:
                rt.stop(runtime.reaper, timeout_s=5)
                runtime.reaper = None
            runtime.save(self.state_dir)
            rt.record_event(self.state_dir, {"event": "stop-all", "stopped": stopped})
        return stopped


def _known(running: SlotRuntime | None, tag: str | None) -> BentoInfo | None:
    """The bento a running slot was started with, when it is `tag` and still on disk."""
    if running is None or tag is None or running.bento != tag or not running.bento_path:
        return None
    if not Path(running.bento_path).is_dir():
        return None
    return BentoInfo(tag=tag, path=Path(running.bento_path), model_version=running.model_version, models=())


def _model_version(tag: str | None) -> str | None:
    if tag is None:
        return None
    try:
        return bento_info(tag).model_version
    except DeployError:
        return "(bento not in the local store)"


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://{LOOPBACK}:{port}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _pythonpath() -> dict[str, str]:
    """Let the reaper import this package the way this process did (installed or via PYTHONPATH)."""
    package_root = str(Path(__file__).resolve().parents[2])
    current = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": package_root + (os.pathsep + current if current else "")}
