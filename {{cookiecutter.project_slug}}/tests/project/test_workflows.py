"""The GitHub workflows: valid, least-privilege, runnable offline under act, and triggered by the right files.

GitHub applies `paths` filters itself and act ignores them, so the trigger tests evaluate the
workflow's own filter globs here, with GitHub's matching rules, against lists of changed files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from {{ cookiecutter.package_name }}.deploy.state import load_state

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONS = ROOT / ".github" / "actions"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
ACTION_FILES = sorted(ACTIONS.glob("*/action.yml"))
NOT_UNDER_ACT = re.compile(r"!\s*env\.ACT\b")


@cache
def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def triggers(name: str) -> dict[str, Any]:
    workflow = load(WORKFLOWS / name)
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    return {event: (config or {}) for event, config in on.items()}


def glob_regex(pattern: str) -> re.Pattern[str]:
    """GitHub's filter-pattern glob: `*` stays within a folder, `**` crosses folders, `?` one character."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def path_included(path: str, patterns: list[str]) -> bool:
    """GitHub's rule: patterns apply in order, the last one that matches decides; `!` excludes."""
    included = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if glob_regex(pattern[1:] if negated else pattern).match(path):
            included = not negated
    return included


def runs_on(name: str, event: str, changed: list[str], branch: str = "main") -> bool:
    """Would a push/pull_request changing `changed` start workflow `name`?"""
    on = triggers(name)
    if event not in on:
        return False
    config = on[event]
    branches = config.get("branches")
    if branches is not None and not any(path_included(branch, [b]) for b in branches):
        return False
    if "paths" in config:
        return any(path_included(path, config["paths"]) for path in changed)
    if "paths-ignore" in config:
        return not all(path_included(path, config["paths-ignore"]) for path in changed)
    return True


# -- the filter helper itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("data/raw/transactions.parquet.dvc", "**.dvc", True),
        ("model.dvc", "**.dvc", True),
        ("src/pkg/model.py", "src/**", True),
        ("src/pkg/model.py", "src/*", False),
        ("params.yaml", "params.yaml", True),
        ("conf/params.yaml", "params.yaml", False),
        ("docs/a/README.md", "**/README.md", True),
        ("README.md", "**/README.md", True),
    ],
)
def test_glob_matches_like_github(path: str, pattern: str, expected: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is expected


def test_a_later_negation_excludes() -> None:
    assert path_included("bentos/bentofile.yaml", ["bentos/**", "!bentos/deployment.yaml"])
    assert not path_included("bentos/deployment.yaml", ["bentos/**", "!bentos/deployment.yaml"])


# -- retrain triggers ------------------------------------------------------------------------------

RETRAINS = [
    ["data/raw/transactions.parquet.dvc"],
    ["data/golden/transactions.parquet.dvc"],
    ["dvc.lock"],
    ["dvc.yaml"],
    ["params.yaml"],
    ["conf/model/mlp.yaml"],
    ["src/pkg/model.py"],
    ["pipelines/train.py"],
    ["constraints.txt"],
    ["README.md", "data/raw/transactions.parquet.dvc"],
]
NO_RETRAIN = [
    ["README.md"],
    ["docs/guide.md", "README.md"],
    ["notebooks/explore.ipynb"],
    ["tests/training/test_model.py"],
    ["bentos/deployment.yaml"],  # a release commits this; it must not retrain
    [".github/workflows/ci.yml"],
]


@pytest.mark.parametrize("event", ["pull_request", "push"])
@pytest.mark.parametrize("changed", RETRAINS, ids=lambda c: "+".join(c))
def test_code_config_and_data_versions_trigger_retrain(event: str, changed: list[str]) -> None:
    assert runs_on("retrain.yml", event, changed)


@pytest.mark.parametrize("event", ["pull_request", "push"])
@pytest.mark.parametrize("changed", NO_RETRAIN, ids=lambda c: "+".join(c))
def test_docs_and_deployment_state_do_not_trigger_retrain(event: str, changed: list[str]) -> None:
    assert not runs_on("retrain.yml", event, changed)


def test_retrain_pushes_only_from_main() -> None:
    assert runs_on("retrain.yml", "push", ["dvc.lock"], branch="main")
    assert not runs_on("retrain.yml", "push", ["dvc.lock"], branch="feature/x")


def test_pull_request_and_push_filters_agree() -> None:
    on = triggers("retrain.yml")
    assert on["pull_request"]["paths"] == on["push"]["paths"]


def test_ci_runs_on_every_push_and_pull_request() -> None:
    for changed in (["README.md"], ["src/pkg/model.py"], ["bentos/deployment.yaml"]):
        assert runs_on("ci.yml", "push", changed, branch="any-branch")
        assert runs_on("ci.yml", "pull_request", changed)


def test_release_follows_retrain_on_main_or_a_person() -> None:
    on = triggers("release.yml")
    assert on["workflow_run"]["workflows"] == ["retrain"]
    assert on["workflow_run"]["branches"] == ["main"]
    assert on["workflow_dispatch"]["inputs"]["rollback"]["type"] == "boolean"


# -- validity and hygiene --------------------------------------------------------------------------


def check_jsonschema(schema: str, files: list[Path]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_match_the_github_schema() -> None:
    assert {p.name for p in WORKFLOW_FILES} >= {"ci.yml", "retrain.yml", "release.yml"}
    check_jsonschema("vendor.github-workflows", WORKFLOW_FILES)


def test_local_actions_match_the_github_schema() -> None:
    check_jsonschema("vendor.github-actions", ACTION_FILES)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_least_privilege_and_bounded_jobs(path: Path) -> None:
    workflow = load(path)
    assert "pull_request_target" not in triggers(path.name)
    assert workflow.get("permissions") == {}, "grant permissions per job, none at the top"
    for name, job in workflow["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} names no permissions"
        assert "write-all" not in str(job["permissions"])
        assert isinstance(job.get("timeout-minutes"), int), f"{path.name}: job {name} has no timeout-minutes"


def test_two_retrains_of_one_branch_never_race() -> None:
    concurrency = load(WORKFLOWS / "retrain.yml")["concurrency"]
    assert "github.event.pull_request.number || github.ref" in concurrency["group"]
    assert "github.event_name == 'pull_request'" in str(concurrency["cancel-in-progress"])


def test_release_deploys_through_the_production_environment() -> None:
    jobs = load(WORKFLOWS / "release.yml")["jobs"]
    for name in ("deploy", "rollback"):
        environment = jobs[name]["environment"]
        assert (environment["name"] if isinstance(environment, dict) else environment) == "production"
    assert "build" in jobs["deploy"]["needs"]
    commands = "\n".join(step.get("run", "") for step in jobs["deploy"]["steps"])
    for command in ("tools/promote.py", "tools/deploy.py set", "tools/deploy.py apply"):
        assert command in commands


def target_outputs(tmp_path: Path, target: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    """Run the release's `deploy target` step on a copy of the state file (with `target` replaced, if given)."""
    step = next(s for s in load(WORKFLOWS / "release.yml")["jobs"]["target"]["steps"] if s.get("id") == "read")
    state = yaml.safe_load((ROOT / "bentos" / "deployment.yaml").read_text(encoding="utf-8"))
    if target is not None:
        state["target"] = target
    (tmp_path / "bentos").mkdir()
    (tmp_path / "bentos" / "deployment.yaml").write_text(yaml.safe_dump(state), encoding="utf-8")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "GITHUB_OUTPUT": str(tmp_path / "output"), "PATH": path}
    # `bash -e`: GitHub's default shell for a step without `shell:`.
    return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("target", "kind", "runs_on"),
    [
        (None, load_state(ROOT / "bentos" / "deployment.yaml").target.kind, None),
        ({"kind": "local", "runner_label": "gpu-box"}, "local", ["self-hosted", "gpu-box"]),
        ({"kind": "kubernetes-gitops", "runner_label": "serving"}, "kubernetes-gitops", "ubuntu-latest"),
    ],
    ids=["committed", "local", "kubernetes-gitops"],
)
def test_release_reads_its_deploy_target_from_the_state_file(
    tmp_path: Path, target: dict[str, str] | None, kind: str, runs_on: Any
) -> None:
    done = target_outputs(tmp_path, target)
    assert done.returncode == 0, done.stderr
    outputs = dict(line.split("=", 1) for line in (tmp_path / "output").read_text(encoding="utf-8").splitlines())
    assert outputs["kind"] == kind
    committed = load_state(ROOT / "bentos" / "deployment.yaml").target
    expected = runs_on or (["self-hosted", committed.runner_label] if kind == "local" else "ubuntu-latest")
    assert json.loads(outputs["runs-on"]) == expected
    assert outputs["image"] == load_state(ROOT / "bentos" / "deployment.yaml").kubernetes.image


def test_release_refuses_an_unknown_deploy_target(tmp_path: Path) -> None:
    done = target_outputs(tmp_path, {"kind": "heroku"})
    assert done.returncode != 0 and "not local or kubernetes-gitops" in done.stderr


def test_deploy_and_rollback_follow_the_target() -> None:
    """Both run where the target says; each target's steps run only for it; CI never talks to a cluster."""
    release = load(WORKFLOWS / "release.yml")
    jobs = release["jobs"]
    for name in ("build", "deploy", "rollback"):
        assert "target" in jobs[name]["needs"], name
    for name in ("deploy", "rollback"):
        assert jobs[name]["runs-on"].strip("${ }") == "fromJSON(needs.target.outputs.runs-on)"
        for step in jobs[name]["steps"]:
            command = step.get("run", "")
            if "deploy.py apply" in command or "deploy.py status" in command or "deploy.py rollback" in command:
                assert "needs.target.outputs.kind == 'local'" in step["if"], step["name"]
            if "deploy/k8s" in command:
                assert "needs.target.outputs.kind == 'kubernetes-gitops'" in step["if"], step["name"]

    def commands(job: str, kind: str) -> str:
        return "\n".join(s.get("run", "") for s in jobs[job]["steps"] if f"kind == '{kind}'" in s.get("if", ""))

    k8s_deploy, k8s_rollback = commands("deploy", "kubernetes-gitops"), commands("rollback", "kubernetes-gitops")
    pinned = 'set --bento "$BENTO_TAG" ${IMAGE_DIGEST:+--image-digest "$IMAGE_DIGEST"} --commit --manifests deploy/k8s'
    assert f"tools/deploy.py {pinned}" in k8s_deploy
    # The digest of the image the build job pushed reaches the manifests (empty under act: nothing is pushed).
    assert "steps.image.outputs.image_digest" in jobs["build"]["outputs"]["image_digest"]
    assert any(step.get("id") == "image" and "docker push" in step["run"] for step in jobs["build"]["steps"])
    step = next(step for step in jobs["deploy"]["steps"] if "--manifests deploy/k8s" in step.get("run", ""))
    assert "needs.build.outputs.image_digest" in step["env"]["IMAGE_DIGEST"]
    assert 'git revert --no-edit "$last"' in k8s_rollback and "render-k8s -o deploy/k8s --check" in k8s_rollback
    assert "kubectl" not in (WORKFLOWS / "release.yml").read_text(encoding="utf-8")


def configure_script() -> str:
    steps = load(WORKFLOWS / "retrain.yml")["jobs"]["train"]["steps"]
    return next(step["run"] for step in steps if step.get("name", "").startswith("Configure"))


def compose(folder: Path, accelerator: str, *overrides: str) -> dict[str, Any]:
    """params.yaml of a project whose conf/ defaults to trainer=`accelerator` (as baked), with overrides."""
    shutil.copytree(ROOT / "conf", folder / "conf")
    config = folder / "conf" / "config.yaml"
    text, found = re.subn(r"(?m)^(\s*- trainer:) *\w+", rf"\1 {accelerator}", config.read_text(encoding="utf-8"))
    assert found == 1, "conf/config.yaml names no trainer default"
    config.write_text(text, encoding="utf-8")
    (folder / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "params.py", folder / "tools")
    subprocess.run([sys.executable, "tools/params.py", *overrides], cwd=folder, check=True, capture_output=True)
    return yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("gpu", "committed", "expected"),
    [("true", "cpu", "gpu"), ("true", "ddp", "ddp"), ("false", "gpu", "cpu"), ("false", "cpu", "cpu")],
)
def test_retrain_trains_on_the_runners_hardware_with_ci_overrides(
    tmp_path: Path, gpu: str, committed: str, expected: str
) -> None:
    """A GPU runner trains a CPU config with trainer=gpu; a CPU runner trains a GPU config on cpu."""
    compose(tmp_path / "ci", committed)
    env = {
        **os.environ,
        "GPU": gpu,
        "RETRAIN_OVERRIDES": "debug=fast",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    subprocess.run(["bash", "-c", configure_script()], cwd=tmp_path / "ci", env=env, check=True, capture_output=True)
    configured = yaml.safe_load((tmp_path / "ci" / "params.yaml").read_text(encoding="utf-8"))
    assert configured == compose(tmp_path / "expected", committed, f"trainer={expected}", "debug=fast")


def setup_plan(tmp_path: Path, gpu: bool, want_torch: str) -> dict[str, str]:
    """Run the setup action's plan step with or without a (fake) nvidia-smi that sees a GPU."""
    step = next(s for s in load(ACTIONS / "setup" / "action.yml")["runs"]["steps"] if s.get("id") == "plan")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if gpu:
        fake = bin_dir / "nvidia-smi"
        fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-0)'\n", encoding="utf-8")
        fake.chmod(0o755)
    output = tmp_path / "output"
    # Only the fake's folder and the basic tools: a real nvidia-smi on this machine must not leak in.
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    env = {"PATH": path, "GITHUB_OUTPUT": str(output), "WANT_PYTHON": "", "WANT_TORCH": want_torch}
    subprocess.run(["bash", "-c", step["run"]], cwd=ROOT, env=env, check=True, capture_output=True)
    return dict(line.split("=", 1) for line in output.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize(
    ("gpu", "want_torch", "cuda"),
    [(True, "auto", "true"), (False, "auto", "false"), (True, "cpu", "false"), (False, "cuda", "true")],
)
def test_setup_takes_the_cuda_torch_build_only_where_a_gpu_is_seen(
    tmp_path: Path, gpu: bool, want_torch: str, cuda: str
) -> None:
    plan = setup_plan(tmp_path, gpu, want_torch)
    assert plan["gpu"] == str(gpu).lower()
    assert plan["cuda"] == cuda
    requires = re.search(r'requires-python = ">=(\d+\.\d+)', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert requires is not None and plan["python"] == requires.group(1)


def test_training_runner_line_is_the_marked_one() -> None:
    text = (WORKFLOWS / "retrain.yml").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.endswith("# training runner")]
    assert len(lines) == 1
    assert lines[0] in ("    runs-on: ubuntu-latest  # training runner",) or lines[0].startswith(
        "    runs-on: [self-hosted, "
    )


def all_steps() -> list[tuple[str, dict[str, Any]]]:
    steps = []
    for path in WORKFLOW_FILES:
        for job in load(path)["jobs"].values():
            steps += [(path.name, step) for step in job.get("steps", [])]
    for path in ACTION_FILES:
        steps += [(str(path.relative_to(ROOT)), step) for step in load(path)["runs"].get("steps", [])]
    return steps


def remote_actions() -> set[str]:
    return {step["uses"] for _, step in all_steps() if "uses" in step and not step["uses"].startswith("./")}


def test_remote_actions_other_than_checkout_skip_under_act() -> None:
    for where, step in all_steps():
        uses = step.get("uses", "")
        if uses and not uses.startswith(("./", "actions/checkout@")):
            assert NOT_UNDER_ACT.search(str(step.get("if", ""))), f"{where}: {uses} runs under act"


def test_actrc_runs_offline_in_host_mode() -> None:
    """act clones every remote action of a job, even skipped ones: .actrc maps each to a local stand-in."""
    actrc = (ROOT / ".actrc").read_text(encoding="utf-8").splitlines()
    assert "-P ubuntu-latest=-self-hosted" in actrc
    assert "-P self-hosted=-self-hosted" in actrc
    mapped = {line.split()[1].split("=")[0] for line in actrc if line.startswith("--local-repository ")}
    # Keyed by the exact ref the workflows pin: when Dependabot moves a pin, move its line here too.
    missing = sorted(remote_actions() - {a for a in remote_actions() if a.startswith("actions/checkout@")} - mapped)
    assert not missing, "add to .actrc:\n" + "\n".join(
        f"--local-repository {action}=./.github/actions/act-offline" for action in missing
    )
    for line in actrc:
        if line.startswith("--local-repository "):
            assert (ROOT / line.split("=", 1)[1] / "action.yml").is_file(), line


def test_act_runs_as_the_repository_its_events_name() -> None:
    """retrain trains a pull request from this repository only; under act the repository is .actrc's."""
    actrc = (ROOT / ".actrc").read_text(encoding="utf-8").splitlines()
    repository = next(line.split("=", 1)[1] for line in actrc if line.startswith("--env GITHUB_REPOSITORY="))
    event = json.loads((ROOT / ".github" / "events" / "pull_request.json").read_text(encoding="utf-8"))
    assert event["pull_request"]["head"]["repo"]["full_name"] == repository == event["repository"]["full_name"]
    condition = load(WORKFLOWS / "retrain.yml")["jobs"]["train"]["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition


def test_workflows_read_secrets_only_from_github_secrets() -> None:
    for path in WORKFLOW_FILES:
        text = path.read_text(encoding="utf-8")
        for key in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_TOKEN"):
            for line in text.splitlines():
                if line.strip().startswith(f"{key}:"):
                    assert "secrets." + key in line, f"{path.name}: {line.strip()}"


@pytest.mark.parametrize("name", ["retrain.yml", "release.yml"])
def test_the_tracking_server_is_set_once_for_every_job(name: str) -> None:
    """A job's own MLFLOW_TRACKING_URI would replace the workflow's: empty whenever only the variable is set."""
    workflow = load(WORKFLOWS / name)
    assert "vars.MLFLOW_TRACKING_URI || secrets.MLFLOW_TRACKING_URI" in workflow["env"]["MLFLOW_TRACKING_URI"]
    for job_name, job in workflow["jobs"].items():
        for scope in [job, *job.get("steps", [])]:
            assert "MLFLOW_TRACKING_URI" not in (scope.get("env") or {}), f"{name}: {job_name}"


def test_monitor_runs_daily_and_opens_its_pr_only_outside_act() -> None:
    """The drift check and its branch commit run everywhere (act included); pushing and the PR need GitHub."""
    assert {"schedule", "workflow_dispatch"} <= set(triggers("monitor.yml"))
    steps = load(WORKFLOWS / "monitor.yml")["jobs"]["drift"]["steps"]
    check = next(step for step in steps if "tools/monitor.py" in step.get("run", ""))
    assert "--open-branch" in check["run"] and "if" not in check
    opens = next(step for step in steps if "gh pr create" in step.get("run", ""))
    assert NOT_UNDER_ACT.search(opens["if"]) and "steps.monitor.outputs.drift == 'true'" in opens["if"]
    push = next(step for step in steps if step.get("run", "").strip() == "dvc push")
    assert "!env.ACT" not in push["if"], "the new data version reaches the DVC remote under act too"


# -- who approved a release ----------------------------------------------------------------------

APPROVER = ROOT / "tools" / "approver.py"


def review(login: str, environment: str, state: str = "approved") -> dict[str, Any]:
    """One review as GitHub's approvals API answers it (recorded from its REST reference, ids shortened)."""
    return {
        "state": state,
        "comment": "Ship it!",
        "environments": [
            {
                "id": 161088068,
                "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4",
                "name": environment,
                "url": f"https://api.github.com/repos/github/hello-world/environments/{environment}",
                "html_url": "https://github.com/github/hello-world/deployments/activity_log?environments_filter="
                + environment,
                "created_at": "2020-11-23T22:00:40Z",
                "updated_at": "2020-11-23T22:00:40Z",
            }
        ],
        "user": {"login": login, "id": 1, "node_id": "MDQ6VXNlcjE=", "type": "User", "site_admin": False},
    }


RECORDED = [review("monalisa", "staging"), review("mallory", "production", "rejected"), review("octocat", "production")]
NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}


@pytest.mark.parametrize(
    ("answer", "approver", "problem"),
    [
        (RECORDED, "octocat", None),
        ([*RECORDED, review("octocat", "production"), review("hubot", "production")], "octocat,hubot", None),
        ([], None, "no approval of the production environment in this run (0 reviews)"),
        ([review("monalisa", "staging")], None, "no approval of the production environment in this run (1 reviews)"),
        (NOT_FOUND, None, "the approvals API answered an error: Not Found"),
        ("<html>rate limited</html>", None, "cannot read the approvals API answer"),
        ([review("x\necho name=eve", "production")], None, "names no valid user login"),
    ],
    ids=["recorded", "two-approvers", "empty", "other-environment", "api-error", "not-json", "bad-login"],
)
def test_the_approver_is_what_the_approvals_api_says(
    tmp_path: Path, answer: Any, approver: str | None, problem: str | None
) -> None:
    """The recorded answer names its approver of `production`; an empty answer, an error or an answer about
    another environment stops the release in one line (exit 2) and names nobody."""
    path = tmp_path / "approvals.json"
    path.write_text(answer if isinstance(answer, str) else json.dumps(answer), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(APPROVER), str(path), "--environment", "production"], capture_output=True, text=True
    )
    if approver is not None:
        assert (done.returncode, done.stdout, done.stderr) == (0, approver + "\n", "")
    else:
        assert done.returncode == 2 and done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("ERROR: ") and str(problem) in done.stderr
        assert "the release stops rather than record a guess" in done.stderr


def approver_step() -> dict[str, Any]:
    return next(s for s in load(WORKFLOWS / "release.yml")["jobs"]["deploy"]["steps"] if s.get("id") == "approver")


def run_approver_step(tmp_path: Path, gh: str) -> tuple[subprocess.CompletedProcess[str], str, list[str]]:
    """The deploy job's `approver` step under `bash -e` with a stand-in `gh` (a shell body); its outputs and
    the gh calls. Each of the step's env values is a stand-in naming itself, as GitHub would fill them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path}/gh-calls"\n{gh}\n', encoding="utf-8")
    (bin_dir / "gh").chmod(0o755)
    step = approver_step()
    env = {key: value for key, value in os.environ.items() if key != "ACT"}
    env |= {key: f"<{key}>" for key in step.get("env", {})}
    env |= {"GITHUB_OUTPUT": str(tmp_path / "output"), "RUNNER_TEMP": str(tmp_path)}
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=ROOT, env=env, capture_output=True, text=True)
    output = tmp_path / "output"
    calls = tmp_path / "gh-calls"
    return (
        done,
        output.read_text(encoding="utf-8") if output.exists() else "",
        calls.read_text(encoding="utf-8").splitlines() if calls.exists() else [],
    )


def test_the_release_records_the_approver_from_the_api(tmp_path: Path) -> None:
    done, output, calls = run_approver_step(tmp_path, f"cat <<'JSON'\n{json.dumps(RECORDED)}\nJSON")
    assert done.returncode == 0, done.stdout + done.stderr
    assert output == "name=octocat\n" and calls == ["api repos/<REPOSITORY>/actions/runs/<RUN_ID>/approvals"]
    steps = load(WORKFLOWS / "release.yml")["jobs"]["deploy"]["steps"]
    promote = next(step for step in steps if "promote.py" in step.get("run", ""))
    assert promote["env"]["APPROVER"].strip("${ }") == "steps.approver.outputs.name"
    assert '--approved-by "$APPROVER"' in promote["run"]


@pytest.mark.parametrize(
    ("gh", "problem"),
    [
        ('echo \'{"message": "Bad credentials"}\'; echo "gh: Bad credentials (HTTP 401)" >&2; exit 1', "cannot read"),
        ("echo '[]'", "names no approver"),
    ],
    ids=["api-fails", "no-approval"],
)
def test_the_release_stops_when_the_api_names_no_approver(tmp_path: Path, gh: str, problem: str) -> None:
    """Never a guess: no fallback to who triggered the run (or anyone else) when the API cannot say."""
    done, output, _ = run_approver_step(tmp_path, gh)
    assert done.returncode != 0 and output == "", f"the step recorded {output!r}"
    assert "::error::" in done.stdout and problem in done.stdout, done.stdout + done.stderr
    text = (WORKFLOWS / "release.yml").read_text(encoding="utf-8")
    assert "triggering_actor" not in text and "|| true" not in approver_step()["run"]
