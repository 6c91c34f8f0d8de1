"""The gate before a switch: a known bento, /readyz answering, and smoke requests giving the expected answers.

Each bento carries its own smoke requests (`src/smoke_requests.json`, written when it is packaged), so the
check always matches the model inside it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..serving import BENTO_MODEL_LABEL
from .state import DeployError

SMOKE_FILE = Path("src/smoke_requests.json")


@dataclass(frozen=True)
class BentoInfo:
    """What the deployer needs to know about a bento in the local store."""

    tag: str
    path: Path
    model_version: str | None
    models: tuple[str, ...]

    @property
    def smoke_file(self) -> Path:
        return self.path / SMOKE_FILE


def bento_info(tag: str) -> BentoInfo:
    """Look the bento up in the local store (BENTOML_HOME); an unknown tag is a DeployError."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        bento = bentoml.get(tag)
    except BentoMLException as error:
        raise DeployError(
            f"bento {tag!r} is not in the local bento store ({_store_path()}): build it with "
            f"`dvc repro package`, or import it with `bentoml import`/`bentoml pull` ({error})"
        ) from None
    labels = dict(bento.info.labels or {})
    models = tuple(str(model.tag) for model in bento.info.models)
    # The package stage's bentos name their bento model (serving.BENTO_MODEL_LABEL); a `model_version`
    # label (stand-ins) wins.
    version = labels.get("model_version") or labels.get(BENTO_MODEL_LABEL) or (models[0] if models else None)
    return BentoInfo(tag=str(bento.tag), path=Path(bento.path), model_version=version, models=models)


def _store_path() -> str:
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return str(BentoMLContainer.bento_store_dir.get())
    except Exception:  # a private API; the message only needs a hint
        return "BENTOML_HOME"


def load_smoke_requests(bento: BentoInfo) -> tuple[float, list[dict[str, Any]]]:
    """(atol, requests) from the bento's smoke file; a missing or malformed file is a DeployError."""
    if not bento.smoke_file.is_file():
        raise DeployError(
            f"bento {bento.tag} has no {SMOKE_FILE}: it cannot prove it answers correctly. Repackage it "
            "(`dvc repro package`) or set checks.smoke: false in bentos/deployment.yaml"
        )
    try:
        document = json.loads(bento.smoke_file.read_text(encoding="utf-8"))
        requests = list(document["requests"])
        atol = float(document.get("atol", 1e-6))
        for request in requests:
            _ = request["path"], request["body"], request["expected"]
    except (ValueError, KeyError, TypeError) as error:
        raise DeployError(
            f"{bento.smoke_file} is malformed ({error!r}); expected atol + requests[path, body, expected]"
        ) from None
    if not requests:
        raise DeployError(f"{bento.smoke_file} holds no requests")
    return atol, requests


def differences(expected: Any, actual: Any, atol: float, where: str = "$") -> list[str]:
    """Every place `actual` departs from `expected`: same keys, same lengths, floats within atol."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return [] if expected is actual else [f"{where}: expected {expected!r}, got {actual!r}"]
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        if math.isfinite(expected) and math.isfinite(actual) and abs(expected - actual) <= atol:
            return []
        return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r} (atol {atol:g})"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = [f"{where}: missing key {key!r}" for key in expected if key not in actual]
        found += [f"{where}: unexpected key {key!r}" for key in actual if key not in expected]
        for key in expected:
            if key in actual:
                found += differences(expected[key], actual[key], atol, f"{where}.{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: expected {len(expected)} items, got {len(actual)}"]
        found = []
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found += differences(left, right, atol, f"{where}[{index}]")
        return found
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def wait_ready(
    base_url: str,
    timeout_s: float,
    alive: Callable[[], bool],
    describe_exit: Callable[[], str],
    log_path: Path | None = None,
) -> float:
    """Poll /readyz until 200; fail fast when the process dies or its log says startup failed."""
    start = time.monotonic()
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() - start < timeout_s:
            if not alive():
                raise DeployError(f"the bento exited before it was ready: {describe_exit()}")
            if startup_failed(log_path):
                raise DeployError(f"the bento crashed on start: {describe_exit()}")
            try:
                response = client.get(f"{base_url}/readyz")
                if response.status_code == 200:
                    return time.monotonic() - start
                last = f"/readyz answered {response.status_code}"
            except httpx.HTTPError as error:
                last = f"/readyz unreachable ({type(error).__name__})"
            time.sleep(0.2)
    if startup_failed(log_path):
        raise DeployError(f"the bento crashed on start: {describe_exit()}")
    raise DeployError(f"not ready after {timeout_s:g} s (checks.readyz_timeout_s): {last}. {describe_exit()}")


# BentoML's arbiter keeps running (and restarting workers) when a service's __init__ raises; its log
# says so at once, so a crashing bento fails in a second rather than at checks.readyz_timeout_s.
STARTUP_FAILED = "Application startup failed"


def startup_failed(log_path: Path | None) -> bool:
    """True when the slot's log shows BentoML gave up starting the service."""
    if log_path is None or not log_path.is_file():
        return False
    with open(log_path, "rb") as handle:
        handle.seek(max(0, log_path.stat().st_size - 65536))
        return STARTUP_FAILED.encode() in handle.read()


def run_smoke(base_url: str, bento: BentoInfo, timeout_s: float) -> int:
    """Send every smoke request; a status other than 200 or any difference is a DeployError."""
    atol, requests = load_smoke_requests(bento)
    with httpx.Client(timeout=timeout_s) as client:
        for number, request in enumerate(requests, 1):
            try:
                response = client.post(f"{base_url}{request['path']}", json=request["body"])
            except httpx.HTTPError as error:
                raise DeployError(f"smoke request {number} to {request['path']} failed: {error!r}") from None
            if response.status_code != 200:
                raise DeployError(
                    f"smoke request {number} to {request['path']} answered {response.status_code}: "
                    f"{response.text[:300]}"
                )
            found = differences(request["expected"], response.json(), atol)
            if found:
                shown = "\n  ".join(found[:10])
                raise DeployError(f"smoke request {number} to {request['path']} gave a different answer:\n  {shown}")
    return len(requests)
