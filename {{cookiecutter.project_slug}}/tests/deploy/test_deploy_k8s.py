"""Kubernetes manifests rendered from the deployment state, validated offline against the official schemas.

The schemas come from the kubernetes-validate package (bundled, strict: unknown fields fail); nothing is
fetched while the tests run.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }}.deploy import k8s
from {{ cookiecutter.package_name }}.deploy.state import DeployError, DeploymentState, load_state, parse_state

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / "bentos" / "deployment.yaml"
DEPLOY = ROOT / "tools" / "deploy.py"
BLUE, GREEN = "{{ cookiecutter.package_name }}_service:aaa111", "{{ cookiecutter.package_name }}_service:bbb222"
SLOT = k8s.SLOT_LABEL


def state_with(live: str | None, blue: str | None = BLUE, green: str | None = GREEN) -> DeploymentState:
    raw = yaml.safe_load(STATE.read_text())
    raw["live"] = live
    raw["slots"]["blue"]["bento"] = blue
    raw["slots"]["green"]["bento"] = green
    return parse_state(raw)


def by_kind(manifests: dict[str, dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for doc in manifests.values():
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def test_blue_green_layout_follows_the_live_slot() -> None:
    manifests = k8s.render_manifests(state_with("green"))
    assert set(manifests) == {
        "deployment-blue.yaml",
        "deployment-green.yaml",
        "service.yaml",
        "service-preview.yaml",
        "networkpolicy.yaml",
        "kustomization.yaml",
    }
    active, preview = manifests["service.yaml"], manifests["service-preview.yaml"]
    assert active["metadata"]["name"] == "fraud-detection-service"
    assert active["spec"]["selector"][SLOT] == "green" and preview["spec"]["selector"][SLOT] == "blue"
    for slot, tag in (("blue", BLUE), ("green", GREEN)):
        deployment = manifests[f"deployment-{slot}.yaml"]
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"][SLOT] == slot
        assert pod["metadata"]["labels"][SLOT] == slot
        container = pod["spec"]["containers"][0]
        assert container["image"].endswith(":" + tag.split(":")[1])
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert manifests["kustomization.yaml"]["resources"] == sorted(set(manifests) - {"kustomization.yaml"})


def test_a_single_release_renders_no_preview() -> None:
    manifests = k8s.render_manifests(state_with("blue", green=None))
    assert set(manifests) == {"deployment-blue.yaml", "service.yaml", "networkpolicy.yaml", "kustomization.yaml"}


def test_rollback_changes_only_the_selectors() -> None:
    forward = k8s.to_text(k8s.render_manifests(state_with("green")))
    back = k8s.to_text(k8s.render_manifests(state_with("blue")))
    changed = {name for name in forward if forward[name] != back[name]}
    assert changed <= {
        "service.yaml",
        "service-preview.yaml",
        "deployment-blue.yaml",
        "deployment-green.yaml",
    }
    assert yaml.safe_load(back["service.yaml"])["spec"]["selector"][SLOT] == "blue"


@pytest.mark.parametrize("version", ["1.28.0", k8s.DEFAULT_K8S_VERSION, "1.37.0"])
def test_rendered_manifests_pass_the_kubernetes_schemas(version: str) -> None:
    assert k8s.validate_manifests(k8s.render_manifests(state_with("green")), version) == []


@pytest.mark.parametrize(
    "where, value",
    [
        (("spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "path"), 42),
        (("spec", "replicas"), "two"),
        (("spec", "template", "spec", "containers", 0, "readinessProbes"), {}),
    ],
)
def test_the_schema_check_catches_broken_manifests(where: tuple, value: object) -> None:
    manifests = k8s.render_manifests(state_with("blue"))
    broken = copy.deepcopy(manifests)
    node = broken["deployment-blue.yaml"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    problems = k8s.validate_manifests(broken)
    assert problems and problems[0].startswith("deployment-blue.yaml")


def test_nothing_live_renders_nothing() -> None:
    with pytest.raises(DeployError, match="nothing is live"):
        k8s.render_manifests(load_state(STATE))


def test_names_are_dns_labels() -> None:
    assert k8s.app_name("My_Service.v2:abc") == "my-service-v2"


# The "restricted" Pod Security Standard (kubernetes.io/docs/concepts/security/pod-security-standards), field by
# field, written from the standard rather than from the renderer, so that a renderer change that breaks it fails.
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
ALLOWED_SECCOMP = {"RuntimeDefault", "Localhost"}


def pod_templates(manifests: dict[str, dict]) -> list[tuple[str, dict]]:
    """(file, pod spec) of every object that makes pods."""
    return [
        (name, doc["spec"]["template"]["spec"])
        for name, doc in manifests.items()
        if "template" in doc.get("spec", {}) and "spec" in doc["spec"]["template"]
    ]


def restricted_violations(pod: dict) -> list[str]:
    """What a namespace enforcing `pod-security.kubernetes.io/enforce: restricted` would reject in this pod, plus
    the two hardening fields the profile leaves optional: a read-only root filesystem and no service-account token."""
    found = []
    context = pod.get("securityContext", {})
    containers = pod.get("initContainers", []) + pod["containers"] + pod.get("ephemeralContainers", [])
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            found.append(f"pod: {host}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {volume['name']}: {sorted(kinds - RESTRICTED_VOLUME_TYPES)}")
    if context.get("runAsUser") == 0:
        found.append("pod: runAsUser 0")
    if context.get("runAsNonRoot") is False:
        found.append("pod: runAsNonRoot false")
    pod_seccomp = context.get("seccompProfile", {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        found.append(f"pod: seccompProfile {pod_seccomp}")
    if pod.get("automountServiceAccountToken") is not False:
        found.append("pod: automountServiceAccountToken is not false")
    for container in containers:
        name = container["name"]
        own = container.get("securityContext", {})
        if own.get("privileged"):
            found.append(f"{name}: privileged")
        if own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if own.get("runAsNonRoot", context.get("runAsNonRoot")) is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if own.get("runAsUser", context.get("runAsUser")) in (0, None):
            found.append(f"{name}: no numeric non-root runAsUser (the image names its user)")
        if own.get("seccompProfile", {}).get("type", pod_seccomp) not in ALLOWED_SECCOMP:
            found.append(f"{name}: seccompProfile is not RuntimeDefault or Localhost")
        capabilities = own.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities add {capabilities['add']}")
        if any("hostPort" in port for port in container.get("ports", [])):
            found.append(f"{name}: hostPort")
        if own.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: readOnlyRootFilesystem is not true")
    return found


@pytest.mark.parametrize("live", ["blue", "green"])
def test_every_pod_meets_the_restricted_pod_security_standard(live: str) -> None:
    pods = pod_templates(k8s.render_manifests(state_with(live)))
    assert [name for name, _ in pods] == ["deployment-blue.yaml", "deployment-green.yaml"]
    for name, pod in pods:
        assert restricted_violations(pod) == [], name


@pytest.mark.parametrize(
    "where, value, expected",
    [
        (("securityContext", "runAsNonRoot"), False, "runAsNonRoot"),
        (("securityContext", "runAsUser"), 0, "runAsUser 0"),
        (("securityContext", "seccompProfile", "type"), "Unconfined", "seccompProfile"),
        (("containers", 0, "securityContext", "allowPrivilegeEscalation"), True, "allowPrivilegeEscalation"),
        (("containers", 0, "securityContext", "capabilities"), {"add": ["NET_ADMIN"]}, "capabilities"),
        (("containers", 0, "securityContext", "readOnlyRootFilesystem"), False, "readOnlyRootFilesystem"),
        (("volumes", 0), {"name": "host", "hostPath": {"path": "/"}}, "hostPath"),
        (("automountServiceAccountToken",), True, "automountServiceAccountToken"),
        (("hostNetwork",), True, "hostNetwork"),
    ],
)
def test_the_restricted_check_catches_each_field(where: tuple, value: object, expected: str) -> None:
    manifests = copy.deepcopy(k8s.render_manifests(state_with("blue", green=None)))
    node = manifests["deployment-blue.yaml"]["spec"]["template"]["spec"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    ((_, pod),) = pod_templates(manifests)
    assert any(expected in problem for problem in restricted_violations(pod)), restricted_violations(pod)


def test_the_server_writes_only_to_its_volumes() -> None:
    """Read-only root: BentoML's home, /tmp and the folder the server starts in (a relative prediction log
    lands there) are emptyDir volumes."""
    manifests = k8s.render_manifests(state_with("green"))
    for _, pod in pod_templates(manifests):
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}
        assert all("emptyDir" in volume for volume in mounts.values())
        env = {item["name"]: item["value"] for item in container["env"]}
        assert {"/tmp", env["BENTOML_HOME"], container["workingDir"]} <= set(mounts)
        assert not any(path.startswith("/home/bentoml") for path in mounts), "a volume there hides the bento"


def test_the_network_policy_admits_only_the_serving_port_and_nothing_out() -> None:
    raw = yaml.safe_load(STATE.read_text())
    raw["live"], raw["slots"]["blue"]["bento"], raw["slots"]["green"]["bento"] = "green", BLUE, GREEN
    raw["kubernetes"]["ingress_from_namespaces"] = ["ingress-nginx"]
    manifests = k8s.render_manifests(parse_state(raw))
    (policy,) = by_kind(manifests)["NetworkPolicy"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    for _, pod_template in [(n, d["spec"]["template"]) for n, d in manifests.items() if d["kind"] == "Deployment"]:
        assert selector.items() <= pod_template["metadata"]["labels"].items(), "every slot's pods are covered"
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and "egress" not in policy["spec"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": raw["kubernetes"]["container_port"]}]
    assert rule["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    ]
    assert "networkpolicy.yaml" in manifests["kustomization.yaml"]["resources"]


def skipped_checks(deployment: dict) -> set[str]:
    return {
        value.split("=", 1)[0]
        for key, value in deployment["metadata"]["annotations"].items()
        if key.startswith("checkov.io/skip")
    }


def test_a_recorded_digest_pins_the_image_and_drops_its_skip() -> None:
    raw = yaml.safe_load(STATE.read_text())
    digest = "sha256:" + "ab" * 32
    raw["live"], raw["slots"]["blue"]["bento"], raw["slots"]["green"]["bento"] = "green", BLUE, GREEN
    raw["slots"]["green"]["image_digest"] = digest
    manifests = k8s.render_manifests(parse_state(raw))
    pinned = manifests["deployment-green.yaml"]
    (container,) = pinned["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(":bbb222@" + digest) and container["imagePullPolicy"] == "IfNotPresent"
    assert "CKV_K8S_43" not in skipped_checks(pinned)
    (tagged,) = manifests["deployment-blue.yaml"]["spec"]["template"]["spec"]["containers"]
    assert "@" not in tagged["image"] and tagged["imagePullPolicy"] == "Always"
    assert "CKV_K8S_43" in skipped_checks(manifests["deployment-blue.yaml"])


def test_skips_follow_the_settings_that_would_make_them_pass() -> None:
    raw = yaml.safe_load(STATE.read_text())
    raw["live"], raw["slots"]["blue"]["bento"] = "blue", BLUE
    raw["slots"]["blue"]["image_digest"] = "sha256:" + "0" * 64
    digest_only = k8s.render_manifests(parse_state(raw))["deployment-blue.yaml"]
    assert skipped_checks(digest_only) == {"CKV_K8S_11", "CKV_K8S_40"}
    raw["kubernetes"].update(cpu_limit="2", run_as_user=10034, run_as_group=10034)
    manifests = k8s.render_manifests(parse_state(raw))
    assert skipped_checks(manifests["deployment-blue.yaml"]) == set()
    (container,) = manifests["deployment-blue.yaml"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["cpu"] == "2"


@pytest.mark.parametrize(
    "slot, message",
    [
        ({"bento": BLUE, "port": 3001, "image_digest": "sha256:abc"}, "should match pattern"),
        ({"bento": None, "port": 3001, "image_digest": "sha256:" + "0" * 64}, "without a bento"),
    ],
)
def test_bad_digests_are_refused(slot: dict, message: str) -> None:
    raw = yaml.safe_load(STATE.read_text())
    raw["slots"]["blue"] = slot
    with pytest.raises(DeployError, match=message):
        parse_state(raw)


def test_cli_renders_validates_and_detects_drift(tmp_path: Path) -> None:
    state = tmp_path / "deployment.yaml"
    shutil.copyfile(STATE, state)
    out = tmp_path / "k8s"

    def deploy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(DEPLOY), "--state", str(state), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ),
        )

    assert deploy("set", "--bento", BLUE, "--no-verify").returncode == 0
    assert deploy("set", "--bento", GREEN, "--no-verify").returncode == 0
    rendered = deploy("render-k8s", "-o", str(out), "--validate")
    assert rendered.returncode == 0, rendered.stderr
    assert "valid against Kubernetes" in rendered.stdout
    assert deploy("render-k8s", "-o", str(out), "--check").returncode == 0
    first = {path.name: path.read_text() for path in out.iterdir()}
    assert deploy("render-k8s", "-o", str(out)).returncode == 0
    assert first == {path.name: path.read_text() for path in out.iterdir()}, "rendering is deterministic"

    assert deploy("rollback", "--no-apply").returncode == 0
    drifted = deploy("render-k8s", "-o", str(out), "--check")
    assert drifted.returncode == 2 and "service.yaml: differs" in drifted.stderr
    assert deploy("render-k8s", "-o", str(out)).returncode == 0
    assert yaml.safe_load((out / "service.yaml").read_text())["spec"]["selector"][SLOT] == "blue"


def test_cli_records_the_image_digest_with_its_bento(tmp_path: Path) -> None:
    state = tmp_path / "deployment.yaml"
    shutil.copyfile(STATE, state)
    digest = "sha256:" + "cd" * 32

    def deploy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(DEPLOY), "--state", str(state), *args], capture_output=True, text=True, timeout=120
        )

    out = tmp_path / "k8s"
    pinned = deploy("set", "--bento", BLUE, "--no-verify", "--image-digest", digest, "--manifests", str(out))
    assert pinned.returncode == 0, pinned.stderr
    assert load_state(state).slots["blue"].image_digest == digest
    pod = yaml.safe_load((out / "deployment-blue.yaml").read_text())["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].endswith("@" + digest)
    assert deploy("set", "--bento", GREEN, "--no-verify").returncode == 0
    assert deploy("set", "--bento", BLUE.replace("aaa111", "ccc333"), "--no-verify").returncode == 0
    assert load_state(state).slots["blue"].image_digest is None, "a new bento in the slot drops the old digest"
    refused = deploy("set", "--bento", GREEN, "--no-verify", "--image-digest", "latest")
    assert refused.returncode == 2 and "image_digest" in refused.stderr
