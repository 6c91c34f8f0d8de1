"""The desired deployment state: `bentos/deployment.yaml`, the one file a release changes.

Git holds this file, so every release and rollback is a commit that can be read, reviewed and
reverted. The running system (local engine or Kubernetes) is made to match it, never the other way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import PipelineError
from ..files import read_document, write_atomically

SlotName = Literal["blue", "green"]
SLOTS: tuple[SlotName, SlotName] = ("blue", "green")
DEFAULT_STATE_FILE = Path("bentos/deployment.yaml")
# BentoML tags: `name:version`, lower case; the version must be pinned (no `latest`) so that the
# commit says exactly what runs.
BENTO_TAG = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?:[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
# An OCI content digest as registries report it after a push (`docker inspect` RepoDigests, after the `@`).
IMAGE_DIGEST = r"^sha256:[0-9a-f]{64}$"
# BentoML's containerize creates the user `bentoml` with this uid and gid and gives it the bento and its
# virtualenv (bentoml/_internal/container/generate.py, BENTO_UID_GID). The image names the user, not the
# number, so Kubernetes can only prove `runAsNonRoot` when the pod states the number.
BENTO_IMAGE_UID = 1034


class DeployError(PipelineError):
    """A deployment cannot go ahead; traffic stays where it was."""


def other(slot: SlotName) -> SlotName:
    """The other colour."""
    return "green" if slot == "blue" else "blue"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Slot(_Strict):
    """One colour: which bento it should run, (local engine) its loopback port, (Kubernetes) its image digest."""

    bento: str | None = None
    port: int = Field(ge=1024, le=65535)
    image_digest: str | None = Field(default=None, pattern=IMAGE_DIGEST)

    @model_validator(mode="after")
    def _tag_is_pinned(self) -> Slot:
        if self.bento is not None:
            if not BENTO_TAG.match(self.bento):
                raise ValueError(f"bento {self.bento!r} is not a bento tag `name:version` (lower case)")
            if self.bento.endswith(":latest"):
                raise ValueError(f"bento {self.bento!r}: pin an exact version, `latest` changes under you")
        elif self.image_digest is not None:
            raise ValueError("an image_digest without a bento: the digest belongs to the slot's bento image")
        return self


class Proxy(_Strict):
    """The reverse proxy in front of both slots (local engine): nginx from the OS packages."""

    engine: Literal["nginx"] = "nginx"
    port: int = Field(default=8080, ge=1024, le=65535)
    drain_timeout_s: float = Field(default=30.0, gt=0)


class Shadow(_Strict):
    """Shadow traffic before a switch (local engine): live requests mirrored to the new slot, answers compared."""

    enabled: bool = False
    window_s: float = Field(default=60.0, gt=0)
    min_requests: int = Field(default=20, ge=1)
    max_compared: int = Field(default=200, ge=1)
    min_agreement: float = Field(default=0.98, ge=0.0, le=1.0)
    max_mean_score_diff: float = Field(default=0.05, ge=0.0)
    max_error_rate: float = Field(default=0.01, ge=0.0, le=1.0)


class Checks(_Strict):
    """What a slot must pass before it takes traffic, and how long the previous one stays up."""

    readyz_timeout_s: float = Field(default=120.0, gt=0)
    smoke: bool = True
    request_timeout_s: float = Field(default=10.0, gt=0)
    grace_period_s: float = Field(default=900.0, ge=0)
    shadow: Shadow = Field(default_factory=Shadow)


_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Kubernetes(_Strict):
    """What `render-k8s` needs beyond the slots: where the images live, how many replicas run, who may call them."""

    namespace: str = Field(default="default", pattern=_DNS_LABEL)
    image: str = Field(min_length=1)
    replicas: int = Field(default=2, ge=1)
    preview_replicas: int | None = Field(default=None, ge=0)
    container_port: int = Field(default=3000, ge=1, le=65535)
    cpu_request: str = "250m"
    cpu_limit: str | None = None
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    run_as_user: int = Field(default=BENTO_IMAGE_UID, ge=1)
    run_as_group: int = Field(default=BENTO_IMAGE_UID, ge=1)
    ingress_from_namespaces: tuple[Annotated[str, Field(pattern=_DNS_LABEL)], ...] = ()


class Target(_Strict):
    """Where the release workflow deploys: the serving host's self-hosted runner, or a GitOps controller."""

    kind: Literal["local", "kubernetes-gitops"] = "local"
    runner_label: str = Field(default="serving", pattern=r"^[A-Za-z0-9._-]+$")


class DeploymentState(_Strict):
    """Both slots, the live colour, and the checks; see bentos/deployment.yaml for the meaning of each key."""

    live: SlotName | None = None
    slots: dict[SlotName, Slot]
    proxy: Proxy = Field(default_factory=Proxy)
    checks: Checks = Field(default_factory=Checks)
    kubernetes: Kubernetes | None = None
    target: Target = Field(default_factory=Target)

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentState:
        missing = [name for name in SLOTS if name not in self.slots]
        if missing:
            raise ValueError(f"slots must define both blue and green (missing: {', '.join(missing)})")
        if self.live is not None and self.slots[self.live].bento is None:
            raise ValueError(f"live is {self.live!r} but slots.{self.live}.bento is empty: nothing to send traffic to")
        ports = {
            "slots.blue.port": self.slots["blue"].port,
            "slots.green.port": self.slots["green"].port,
            "proxy.port": self.proxy.port,
        }
        if len(set(ports.values())) < len(ports):
            raise ValueError(f"ports must all differ: {ports}")
        return self

    def idle(self) -> SlotName:
        """The slot a new bento goes into: the one not live (blue when nothing is live yet)."""
        return "blue" if self.live is None else other(self.live)


def _live_markers(raw: dict[str, Any]) -> list[str]:
    """Every way a file can claim a slot is live; more than one is the classic both-live mistake."""
    markers: list[str] = []
    live = raw.get("live")
    if isinstance(live, list | tuple):
        markers += [str(item) for item in live]
    elif isinstance(live, str) and live.lower() in ("both", "all"):
        markers += list(SLOTS)
    elif live is not None:
        markers.append(str(live))
    slots = raw.get("slots")
    if isinstance(slots, dict):
        for name, slot in slots.items():
            if isinstance(slot, dict) and slot.get("live") is True and str(name) not in markers:
                markers.append(str(name))
    return markers


def parse_state(raw: Any, source: str = "deployment state") -> DeploymentState:
    """Validate a loaded YAML document; every problem becomes one readable DeployError."""
    if not isinstance(raw, dict):
        raise DeployError(f"{source}: expected a mapping with `live`, `slots`, `checks`, got {type(raw).__name__}")
    markers = _live_markers(raw)
    if len(markers) > 1:
        raise DeployError(
            f"{source}: more than one slot is marked live ({', '.join(markers)}). Blue-green sends all "
            "traffic to exactly one slot: set `live: blue` or `live: green` (top level)."
        )
    if isinstance(raw.get("live"), list | tuple):
        raw = {**raw, "live": markers[0] if markers else None}
    try:
        return DeploymentState.model_validate(raw)
    except ValidationError as error:
        lines = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"]) or "(top level)"
            lines.append(f"  {where}: {item['msg'].removeprefix('Value error, ')}")
        raise DeployError(f"{source} is not a valid deployment state:\n" + "\n".join(lines)) from None


def load_state(path: Path = DEFAULT_STATE_FILE) -> DeploymentState:
    """Read and validate the state file."""
    raw = read_document(path, DeployError, "the deployment state lives in bentos/deployment.yaml")
    return parse_state(raw, str(path))


def _round_trip() -> Any:
    from ruamel.yaml import YAML

    handler = YAML()
    handler.preserve_quotes = True
    handler.width = 4096
    # Keep `null` spelled out (ruamel writes an empty value by default), so untouched lines stay untouched.
    handler.representer.add_representer(
        type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return handler


def update_state_file(
    path: Path,
    *,
    live: SlotName | None,
    bentos: dict[SlotName, str | None],
    image_digests: dict[SlotName, str | None] | None = None,
) -> DeploymentState:
    """Change `live`, slot bentos and their image digests in place, keeping comments and key order, so the git
    diff is the change.

    A slot that gets a bento gets its digest with it (`image_digests`, none by default): a digest never
    outlives the bento it was pushed for. The new content is validated before the file is touched.
    """
    handler = _round_trip()
    document = handler.load(path.read_text(encoding="utf-8"))
    document["live"] = live
    digests = image_digests or {}
    for name, tag in bentos.items():
        slot = document["slots"][name]
        slot["bento"] = tag
        digest = digests.get(name)
        if digest is not None or "image_digest" in slot:
            slot["image_digest"] = digest
    plain = yaml.safe_load(_dump(handler, document))
    state = parse_state(plain, str(path))
    write_atomically(path, _dump(handler, document))
    return state


def _dump(handler: Any, document: Any) -> str:
    import io

    buffer = io.StringIO()
    handler.dump(document, buffer)
    return buffer.getvalue()


def with_bento(state: DeploymentState, tag: str, *, promote: bool = True) -> tuple[SlotName, SlotName | None]:
    """Where `set --bento tag` puts it: (slot, new live). Re-setting the live bento is a no-op."""
    if state.live is not None and state.slots[state.live].bento == tag:
        return state.live, state.live
    slot = state.idle()
    return slot, slot if promote else state.live
