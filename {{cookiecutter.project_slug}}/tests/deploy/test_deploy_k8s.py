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
    assert set(manifests) == {"deployment-blue.yaml", "service.yaml", "kustomization.yaml"}


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
