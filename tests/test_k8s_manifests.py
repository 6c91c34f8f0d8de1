"""checkov's Kubernetes checks on the manifests a `deploy_target=kubernetes-gitops` project renders.

Nothing may fail; a check the renderer cannot meet with the configured values is skipped by a
`checkov.io/skip` annotation on the object, with its reason, and only the checks named here may be skipped,
so a new skip is a decision someone makes in this file. The restricted Pod Security Standard itself is
checked field by field by the baked project's own tests (tests/deploy/test_deploy_k8s.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import bake, run

# What the default settings leave unmet (see checkov_skips in the project's deploy/k8s.py): no CPU limit, and the
# uid of BentoML's image user under 10000; with no recorded image digest, the digest check as well.
SKIPPED_WITH_DIGEST = {"CKV_K8S_11", "CKV_K8S_40"}
SKIPPED_WITHOUT_DIGEST = SKIPPED_WITH_DIGEST | {"CKV_K8S_43"}
NO_REASON = "No comment provided"  # what checkov records for a skip annotation without `=reason`


def checkov_binary() -> str:
    found = shutil.which("checkov")
    if found is None:
        pytest.fail("checkov is not installed: bash scripts/bootstrap.sh installs it (requirements-checkov.txt)")
    return found


@pytest.fixture(scope="module")
def k8s_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake(tmp_path_factory.mktemp("k8s"), deploy_target="kubernetes-gitops")


def render(project: Path, out: Path, digest: str | None) -> Path:
    """Two releases (blue, then green live) into a copy of the state file, rendered into `out`."""
    state = out.parent / "deployment.yaml"
    shutil.copyfile(project / "bentos" / "deployment.yaml", state)
    package = json.loads((project / ".cruft.json").read_text())["context"]["cookiecutter"]["package_name"]
    pin = ["--image-digest", digest] if digest else []
    for version in ("aaa111", "bbb222"):
        tag = f"{package}_service:{version}"
        run([sys.executable, "tools/deploy.py", "--state", str(state), "set", "--bento", tag, "--no-verify", *pin],
            cwd=project)
    run([sys.executable, "tools/deploy.py", "--state", str(state), "render-k8s", "-o", str(out), "--validate"],
        cwd=project)
    return out


def checkov(folder: Path) -> dict[str, Any]:
    """checkov's JSON report on the folder's Kubernetes manifests (offline; no skip from the environment)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("CKV_", "BC_", "PRISMA_"))}
    done = subprocess.run(
        [checkov_binary(), "-d", str(folder), "--framework", "kubernetes", "--skip-download", "--compact",
         "-o", "json"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    # Exit status 1 means failed checks, which the assertions below list; anything else is checkov failing.
    assert done.returncode in (0, 1), f"checkov exited {done.returncode}\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    (kubernetes,) = [item for item in reports if item["check_type"] == "kubernetes"]
    return kubernetes


@pytest.mark.parametrize("pinned", [False, True], ids=["tagged", "pinned-by-digest"])
def test_rendered_manifests_pass_checkov(k8s_project: Path, tmp_path: Path, pinned: bool) -> None:
    digest = "sha256:" + "5e" * 32 if pinned else None
    out = render(k8s_project, tmp_path / "k8s", digest)
    report = checkov(out)
    results = report["results"]
    assert report["summary"]["parsing_errors"] == 0, results["parsing_errors"]

    scanned = {check["resource"] for kind in ("passed_checks", "skipped_checks") for check in results[kind]}
    deployments = {name for name in scanned if name.startswith("Deployment.")}
    assert len(deployments) == 2, f"checkov did not scan both slots' Deployments: {sorted(scanned)}"

    failed = [f"{check['check_id']} {check['check_name']} ({check['resource']})" for check in results["failed_checks"]]
    assert failed == [], "checkov checks that fail:\n  " + "\n  ".join(failed)

    skipped: dict[str, set[str]] = {}
    for check in results["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        where = f"{check['check_id']} on {check['resource']}"
        assert reason.strip() and reason != NO_REASON, f"{where}: skipped without a reason"
        skipped.setdefault(check["resource"], set()).add(check["check_id"])
    expected = SKIPPED_WITH_DIGEST if pinned else SKIPPED_WITHOUT_DIGEST
    assert skipped == {name: expected for name in deployments}
