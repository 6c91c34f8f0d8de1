"""Kubernetes manifests from the same deployment state: two Deployments and Services whose selectors switch.

Each slot with a bento is a Deployment (`<app>-blue`, `<app>-green`) whose pods are labelled with their
slot; the Service `<app>` selects the live slot and `<app>-preview` the idle one. Releasing or rolling
back changes `live` in bentos/deployment.yaml, which changes one selector; Argo CD or Flux applies the
rendered folder. Readiness probes on /readyz keep a pod out of the Service until its model is loaded.
The output is deterministic, so `render-k8s --check` can fail CI when the committed manifests drift.

The pods meet the "restricted" Pod Security Standard: a numeric non-root user, no privilege escalation,
every capability dropped, the runtime's default seccomp profile, a read-only root filesystem with an
emptyDir wherever the server writes, and no service-account token. A NetworkPolicy admits traffic to the
serving port only, and none out. Where a checkov check cannot pass with the configured values, the
Deployment carries a `checkov.io/skip` annotation that says why and which setting makes it pass.
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
# The uid from which checkov's CKV_K8S_40 ("containers should run as a high UID") passes.
HIGH_UID = 10000

# Where the server writes, each an emptyDir, since the root filesystem is read-only. BentoML creates its home
# (bentos/, models/, envs/, tmp/ and the Prometheus multiprocess dir) at start; the image points BENTOML_HOME at
# /home/bentoml/, which also holds the bento itself, so the home moves to a volume of its own instead of a
# volume hiding the bento. The server starts in SERVE_DIR (the container's workingDir, so the shell of the
# bento's entrypoint sets $PWD there): a relative `prediction_log.dir` (conf/serve, `logs/predictions`)
# lands under it, as it lands under the project with the local engine.
TMP_DIR = "/tmp"
BENTOML_HOME = "/var/lib/bentoml"
SERVE_DIR = "/srv/serve"
WRITABLE_VOLUMES = {"tmp": TMP_DIR, "bentoml-home": BENTOML_HOME, "serve": SERVE_DIR}


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


def image_reference(k8s: Kubernetes, version: str, digest: str | None) -> str:
    """`<image>:<version>`, and `@<digest>` when the slot records one: the node then runs exactly that image."""
    return f"{k8s.image}:{version}" + (f"@{digest}" if digest else "")


def checkov_skips(k8s: Kubernetes, digest: str | None) -> dict[str, str]:
    """checkov check id -> why it cannot pass with these settings, and the setting that makes it pass.

    Only checks the configured values leave unmet are named, so the same check passes once the value
    changes (a digest recorded, a CPU limit set, a high uid). checkov reads `id=reason`: no `=` in a reason.
    """
    skips = {}
    if digest is None:
        skips["CKV_K8S_43"] = (
            "no image digest recorded for this slot (deploy.py set --image-digest sha256:...); the bento "
            "version tag is unique per build and imagePullPolicy Always makes every pod start resolve it again"
        )
    if k8s.cpu_limit is None:
        skips["CKV_K8S_11"] = (
            "no CPU limit on purpose (kubernetes.cpu_limit: null): the pod is guaranteed its CPU request and a "
            "limit only adds CFS throttling latency to the server; set kubernetes.cpu_limit to cap it"
        )
    if k8s.run_as_user < HIGH_UID:
        skips["CKV_K8S_40"] = (
            f"runs as uid {k8s.run_as_user}: the bentoml user that bentoml containerize creates and gives the "
            "bento to (non-root, as the restricted Pod Security Standard requires); build the image with "
            "BENTO_USER_UID of 10000 or more and set kubernetes.run_as_user to it to pass"
        )
    assert not any("=" in reason for reason in skips.values()), "checkov splits the annotation on `=`"
    return skips


def pod_security(k8s: Kubernetes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) securityContext of the restricted Pod Security Standard.

    The uid is stated because the image names its user (`USER bentoml`): without the number the kubelet
    cannot verify runAsNonRoot and refuses to start the container.
    """
    pod = {
        "runAsNonRoot": True,
        "runAsUser": k8s.run_as_user,
        "runAsGroup": k8s.run_as_group,
        "fsGroup": k8s.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def deployment(
    app: str, slot: SlotName, tag: str, k8s: Kubernetes, replicas: int, digest: str | None = None
) -> dict[str, Any]:
    """One slot: pods of one bento image, ready only when /readyz says the model is loaded and warm."""
    version = tag.split(":", 1)[1]
    selector = {"app.kubernetes.io/name": app, SLOT_LABEL: slot}
    pod_labels = _labels(app, slot, version)
    pod_context, container_context = pod_security(k8s)
    limits = {"memory": k8s.memory_limit} | ({"cpu": k8s.cpu_limit} if k8s.cpu_limit else {})
    env = {**TELEMETRY_OFF, "BENTOML_HOME": BENTOML_HOME}
    container = {
        "name": "bento",
        "image": image_reference(k8s, version, digest),
        # A digest names immutable content: the node's copy is the image. A tag could be pushed again, so
        # without a digest every start asks the registry (which also re-checks the pull credentials).
        "imagePullPolicy": "IfNotPresent" if digest else "Always",
        "workingDir": SERVE_DIR,
        "ports": [{"name": "http", "containerPort": k8s.container_port, "protocol": "TCP"}],
        "env": [{"name": name, "value": value} for name, value in env.items()],
        "startupProbe": _probe("/livez", 5, 60),
        "readinessProbe": _probe("/readyz", 5, 3),
        "livenessProbe": _probe("/livez", 10, 3),
        "resources": {"requests": {"cpu": k8s.cpu_request, "memory": k8s.memory_request}, "limits": limits},
        "securityContext": container_context,
        "volumeMounts": [{"name": name, "mountPath": path} for name, path in WRITABLE_VOLUMES.items()],
    }
    skips = checkov_skips(k8s, digest)
    annotations = {"gitops-ml/bento": tag} | {
        f"checkov.io/skip{number}": f"{check}={reason}" for number, (check, reason) in enumerate(skips.items(), 1)
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{app}-{slot}",
            "namespace": k8s.namespace,
            "labels": pod_labels,
            "annotations": annotations,
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {"gitops-ml/bento": tag}},
                "spec": {
                    # The server calls no Kubernetes API.
                    "automountServiceAccountToken": False,
                    "securityContext": pod_context,
                    "containers": [container],
                    "volumes": [{"name": name, "emptyDir": {}} for name in WRITABLE_VOLUMES],
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    }


def network_policy(app: str, k8s: Kubernetes) -> dict[str, Any]:
    """Both slots' pods: calls in on the serving port only, from this namespace and the listed ones; none out.

    The bento needs no network: its model is in the image, telemetry is off and the prediction log is a
    local file. Probes come from the node's kubelet, which NetworkPolicy always admits. An ingress
    controller or a Prometheus in another namespace goes in `kubernetes.ingress_from_namespaces`.
    """
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    peers += [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
        for name in k8s.ingress_from_namespaces
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": app, "namespace": k8s.namespace, "labels": _labels(app)},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": app}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": k8s.container_port}]}],
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
            digest = state.slots[slot].image_digest
            manifests[f"deployment-{slot}.yaml"] = deployment(app, slot, tag, k8s, replicas, digest)
    manifests["service.yaml"] = service(app, app, state.live, k8s, "active")
    manifests["networkpolicy.yaml"] = network_policy(app, k8s)
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
