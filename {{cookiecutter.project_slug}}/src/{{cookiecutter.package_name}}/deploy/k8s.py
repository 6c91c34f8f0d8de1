"""Kubernetes manifests from the same deployment state: two Deployments and Services whose selectors switch.

Each slot with a bento is a Deployment (`<app>-blue`, `<app>-green`) whose pods are labelled with their
slot; the Service `<app>` selects the live slot and `<app>-preview` the idle one. Releasing or rolling
back changes `live` in bentos/deployment.yaml, which changes one selector; Argo CD or Flux applies the
rendered folder. Readiness probes on /readyz keep a pod out of the Service until its model is loaded.
The output is deterministic, so `render-k8s --check` can fail CI when the committed manifests drift.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..stage import TELEMETRY_OFF
from .state import SLOTS, DeployError, DeploymentState, Kubernetes, SlotName, other

HEADER = "# Rendered by `python tools/deploy.py render-k8s` from bentos/deployment.yaml. Do not edit.\n"
SLOT_LABEL = "gitops-ml/slot"
DEFAULT_K8S_VERSION = "1.30.0"


def app_name(bento_tag: str) -> str:
    """A DNS-1123 name from the bento name (`{{ cookiecutter.package_name }}_service` -> `fraud-detection-service`)."""
    return bento_tag.split(":", 1)[0].replace("_", "-").replace(".", "-").lower()[:50].strip("-")


def _labels(app: str, slot: SlotName | None = None, version: str | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/component": "model-server"}
    if slot is not None:
        labels[SLOT_LABEL] = slot
    if version is not None:
        labels["app.kubernetes.io/version"] = version[:63]
    return labels


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def deployment(app: str, slot: SlotName, tag: str, k8s: Kubernetes, replicas: int) -> dict[str, Any]:
    """One slot: pods of one bento image, ready only when /readyz says the model is loaded and warm."""
    version = tag.split(":", 1)[1]
    selector = {"app.kubernetes.io/name": app, SLOT_LABEL: slot}
    pod_labels = _labels(app, slot, version)
    container = {
        "name": "bento",
        "image": f"{k8s.image}:{version}",
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": k8s.container_port, "protocol": "TCP"}],
        "env": [{"name": name, "value": value} for name, value in TELEMETRY_OFF.items()],
        "startupProbe": _probe("/livez", 5, 60),
        "readinessProbe": _probe("/readyz", 5, 3),
        "livenessProbe": _probe("/livez", 10, 3),
        "resources": {
            "requests": {"cpu": k8s.cpu_request, "memory": k8s.memory_request},
            "limits": {"memory": k8s.memory_limit},
        },
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{app}-{slot}",
            "namespace": k8s.namespace,
            "labels": pod_labels,
            "annotations": {"gitops-ml/bento": tag},
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {"gitops-ml/bento": tag}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 30},
            },
        },
    }


def service(app: str, name: str, slot: SlotName, k8s: Kubernetes, role: str) -> dict[str, Any]:
    """A Service whose selector picks one slot: the switch that moves traffic."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": k8s.namespace,
            "labels": _labels(app),
            "annotations": {"gitops-ml/role": role, "gitops-ml/slot": slot},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": app, SLOT_LABEL: slot},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_manifests(state: DeploymentState) -> dict[str, dict[str, Any]]:
    """File name -> manifest, for the live slot, the idle slot (if it holds a bento) and both Services."""
    if state.kubernetes is None:
        raise DeployError("bentos/deployment.yaml has no `kubernetes:` section (image, namespace, replicas)")
    if state.live is None:
        raise DeployError("nothing is live in bentos/deployment.yaml: `deploy.py set --bento TAG` first")
    k8s = state.kubernetes
    live_tag = state.slots[state.live].bento
    assert live_tag is not None
    app = app_name(live_tag)
    idle = other(state.live)
    manifests: dict[str, dict[str, Any]] = {}
    for slot in SLOTS:
        tag = state.slots[slot].bento
        if tag is not None:
            replicas = k8s.replicas if slot == state.live else (k8s.preview_replicas or k8s.replicas)
            manifests[f"deployment-{slot}.yaml"] = deployment(app, slot, tag, k8s, replicas)
    manifests["service.yaml"] = service(app, app, state.live, k8s, "active")
    if state.slots[idle].bento is not None:
        manifests["service-preview.yaml"] = service(app, f"{app}-preview", idle, k8s, "preview")
    manifests["kustomization.yaml"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": k8s.namespace,
        "resources": sorted(name for name in manifests),
    }
    return manifests


class _PlainDumper(yaml.SafeDumper):
    """No `&id001` anchors: every manifest reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_text(manifests: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The exact file contents render-k8s writes."""
    return {
        name: HEADER + yaml.dump(doc, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)
        for name, doc in manifests.items()
    }


def write_manifests(manifests: dict[str, dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write the files and remove stale ones that an earlier render wrote (for example a dropped slot)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = to_text(manifests)
    for old in out_dir.glob("*.yaml"):
        if old.name not in texts and old.read_text(encoding="utf-8").startswith(HEADER):
            old.unlink()
    written = []
    for name, text in texts.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    return written


def drift(manifests: dict[str, dict[str, Any]], out_dir: Path) -> list[str]:
    """Files in out_dir that differ from a fresh render (missing, changed, or stale)."""
    texts = to_text(manifests)
    found = []
    for name, text in texts.items():
        path = out_dir / name
        if not path.is_file():
            found.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            found.append(f"{path}: differs from bentos/deployment.yaml")
    for old in sorted(out_dir.glob("*.yaml")) if out_dir.is_dir() else []:
        if old.name not in texts and old.read_text(encoding="utf-8").startswith(HEADER):
            found.append(f"{old}: stale (no longer rendered)")
    return found


def validate_manifests(manifests: dict[str, dict[str, Any]], k8s_version: str = DEFAULT_K8S_VERSION) -> list[str]:
    """Check every Kubernetes object against the official OpenAPI schemas bundled in kubernetes-validate.

    Strict: unknown fields are errors too. Offline: the schemas ship inside the package.
    """
    try:
        import kubernetes_validate
    except ImportError:
        raise DeployError("schema validation needs kubernetes-validate (`pip install kubernetes-validate`)") from None
    problems: list[str] = []
    for name, doc in manifests.items():
        if doc.get("kind") == "Kustomization":
            problems += _check_kustomization(name, doc, manifests)
            continue
        try:
            kubernetes_validate.validate(doc, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            problems.append(f"{name}: {where}: {error.message}")
        except (
            kubernetes_validate.SchemaNotFoundError,
            kubernetes_validate.InvalidSchemaError,
            kubernetes_validate.utils.VersionNotSupportedError,
        ) as error:
            problems.append(f"{name}: no schema: {error}")
    return problems


def _check_kustomization(name: str, doc: dict[str, Any], manifests: dict[str, dict[str, Any]]) -> list[str]:
    # Kustomization is a kustomize file, not an API object: check the parts Argo CD and Flux read.
    problems = []
    if doc.get("apiVersion") != "kustomize.config.k8s.io/v1beta1":
        problems.append(f"{name}: apiVersion must be kustomize.config.k8s.io/v1beta1")
    missing = [item for item in doc.get("resources", []) if item not in manifests]
    if missing:
        problems.append(f"{name}: resources not rendered: {missing}")
    return problems
