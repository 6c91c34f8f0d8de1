"""The DVC remote on S3, end to end: push a pipeline's data and outputs to a local S3 server (moto),
pull them into a fresh clone, and find nothing for `dvc repro` to do there.

Slow tier (`pytest -m slow`); needs the dev extra (`pip install -c constraints.txt -e '.[dev]'`), which holds
moto and DVC's S3 plugin: a fast test checks that it does.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import PROJECT, run
from packaging.requirements import Requirement

from {{ cookiecutter.package_name }}.deploy.runtime import free_ports
from {{ cookiecutter.package_name }}.lineage import file_md5

BUCKET = "dvc-remote"
REMOTE = "s3test"


def extra_requirements(extra: str) -> set[str]:
    """The names of what `pip install -e '.[extra]'` brings, the project's own extras it names included."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names: set[str] = set()
    for line in project["optional-dependencies"][extra]:
        requirement = Requirement(line)
        if requirement.name == project["name"]:
            for named in requirement.extras:
                names |= extra_requirements(named)
        else:
            names.add(requirement.name)
    return names


def test_the_dev_extra_holds_what_this_test_needs_pinned() -> None:
    """`pip install -e '.[dev]'` is enough for the whole suite: moto and dvc-s3 come with it, pinned."""
    needed = {"moto", "dvc-s3"}
    assert needed <= extra_requirements("dev"), f"the dev extra lacks {needed - extra_requirements('dev')}"
    pins = (PROJECT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    for name in needed:
        assert any(line.startswith(f"{name}==") for line in pins), f"constraints.txt does not pin {name}"


@pytest.fixture
def s3_endpoint(tmp_path: Path) -> Iterator[str]:
    """moto's S3 server on a free loopback port with an empty bucket; stopped afterwards."""
    assert importlib.util.find_spec("dvc_s3") is not None, (
        "DVC's S3 plugin is missing: pip install -c constraints.txt -e '.[dev]'"
    )
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "moto.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "moto.log").read_text()
            try:
                httpx.put(f"{url}/{BUCKET}", timeout=2).raise_for_status()  # S3's CreateBucket
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "moto's S3 server did not answer within 60 s"
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def tracked_files(project: Path) -> dict[str, str]:
    """md5 of every file of the *.dvc pointers' and dvc.lock's outputs in `project`, by relative path."""
    roots = [
        pointer.parent / out["path"]
        for pointer in project.glob("data/*/*.dvc")
        for out in yaml.safe_load(pointer.read_text())["outs"]
    ]
    for stage in yaml.safe_load((project / "dvc.lock").read_text())["stages"].values():
        roots += [project / out["path"] for out in stage.get("outs", [])]
    files = [file for root in roots for file in ([root] if root.is_file() else sorted(root.rglob("*")))]
    return {str(file.relative_to(project)): file_md5(file) for file in files if file.is_file()}


@pytest.mark.slow
def test_push_clone_pull_then_nothing_to_reproduce(packaged_workspace: Path, s3_endpoint: str, tmp_path: Path) -> None:
    # Dummy credentials, and no AWS config of this machine's user: moto accepts any key.
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    remote = [
        ["dvc", "remote", "add", "--local", "-f", REMOTE, f"s3://{BUCKET}/project"],
        ["dvc", "remote", "modify", "--local", REMOTE, "endpointurl", s3_endpoint],
    ]
    workspace = packaged_workspace
    # What a clone gets from git: dvc.lock, params.yaml and the small reports of this run (not the test's bento store).
    run(["git", "add", "-A", "--", ".", ":(exclude)tmp"], workspace)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    run([*git, "commit", "-q", "--allow-empty", "-m", "pipeline run"], workspace)
    for command in remote:
        run(command, workspace)
    run(["dvc", "push", "-r", REMOTE], workspace, env=env, timeout=300)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    expected = tracked_files(workspace)
    assert [path for path in expected if not (clone / path).exists()], "the clone has the data before any pull"
    for command in remote:
        run(command, clone)
    run(["dvc", "pull", "-r", REMOTE], clone, env=env, timeout=300)
    assert tracked_files(clone) == expected

    repro = run(["dvc", "repro"], clone, env=env, timeout=300)
    assert "Running stage" not in repro.stdout, repro.stdout
    assert "up to date" in repro.stdout, repro.stdout
