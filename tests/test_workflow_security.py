"""The workflows an outside reviewer checks: zizmor and actionlint report nothing, and a fork's pull request
never runs on a self-hosted runner.

zizmor (offline, its default persona) and actionlint run on every bake whose options shape the workflows
(the default; a self-hosted GPU training runner; the Kubernetes deploy target) and on the template's own
workflow. A finding fails the test unless it is suppressed in place (`# zizmor: ignore[rule]` with the
reason beside it). The self-hosted jobs' `if:` is evaluated, with GitHub's rules, against the payloads of
a fork's pull request and of a same-repository one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEMPLATE, bake

SHAPES = {"default": {}, "gpu-runner": {"ci_gpu_runner_label": "gpu-a100"},
          "kubernetes-gitops": {"deploy_target": "kubernetes-gitops"}}
GPU_LABEL = SHAPES["gpu-runner"]["ci_gpu_runner_label"]


def tool(name: str) -> str:
    """A checker from this environment (requirements-dev.txt); missing is a failure, never a skip."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -r requirements-dev.txt (scripts/bootstrap.sh does)")
    return found


@pytest.fixture(scope="module")
def bakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: bake(tmp_path_factory.mktemp(name), **answers) for name, answers in SHAPES.items()}


def zizmor_findings(target: Path) -> list[str]:
    """What `zizmor --offline` (default persona, no config file) reports, one line per finding."""
    done = subprocess.run([tool("zizmor"), "--offline", "--no-config", "--format", "json", str(target)],
                          capture_output=True, text=True)
    assert done.stdout.strip().startswith("["), f"zizmor exited {done.returncode}:\n{done.stderr[-3000:]}"
    findings = []
    for finding in json.loads(done.stdout):
        where = finding["locations"][0]
        path = where["symbolic"]["key"]["Local"]["given_path"]
        line = where["concrete"]["location"]["start_point"]["row"] + 1
        findings.append(f"{path}:{line}: {finding['ident']}: {finding['desc']}")
    return findings


def actionlint_findings(cwd: Path, *files: str) -> list[str]:
    """actionlint's errors (shellcheck on every `run:` script; the project's own .github/actionlint.yaml)."""
    command = [tool("actionlint"), "-oneline", "-no-color", f"-shellcheck={tool('shellcheck')}", "-pyflakes=",
               *files]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert done.returncode in (0, 1), f"actionlint exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout.splitlines()


@pytest.mark.parametrize("shape", SHAPES)
def test_zizmor_reports_nothing_on_the_baked_workflows(bakes: dict[str, Path], shape: str) -> None:
    project = bakes[shape]
    assert (project / ".github" / "dependabot.yml").is_file()  # collected too: its cooldown is audited
    findings = zizmor_findings(project)
    assert not findings, "\n".join(findings)


@pytest.mark.parametrize("shape", SHAPES)
def test_actionlint_reports_nothing_on_the_baked_workflows(bakes: dict[str, Path], shape: str) -> None:
    findings = actionlint_findings(bakes[shape])
    assert not findings, "\n".join(findings)


def test_the_template_workflow_is_clean_too() -> None:
    findings = zizmor_findings(TEMPLATE / ".github")
    findings += actionlint_findings(TEMPLATE, ".github/workflows/template-ci.yml")
    assert not findings, "\n".join(findings)
    text = (TEMPLATE / ".github" / "workflows" / "template-ci.yml").read_text(encoding="utf-8")
    assert "EXTRA_INDEX_URL" not in text, "an extra index for every install lets it shadow PyPI's packages"


PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


@pytest.mark.parametrize("shape", SHAPES)
def test_remote_actions_are_pinned_by_commit_with_their_tag(bakes: dict[str, Path], shape: str) -> None:
    """Dependabot moves `@<sha> # vX.Y.Z` pins together; a tag alone can be moved by whoever owns it."""
    github = bakes[shape] / ".github"
    for path in [*github.glob("workflows/*.yml"), *github.glob("actions/*/action.yml"),
                 TEMPLATE / ".github" / "workflows" / "template-ci.yml"]:
        for line in path.read_text(encoding="utf-8").splitlines():
            found = re.match(r"^\s*(?:- )?uses: (\S+)(.*)$", line)
            if found and not found.group(1).startswith("./"):
                assert PINNED.match(found.group(1) + found.group(2).split("  #")[0]), f"{path.name}: {line.strip()}"


# -- GitHub's expression language, enough of it to evaluate a job's `if:` ---------------------------
# Operators `!`, `==`, `!=`, `&&`, `||` and parentheses over property paths and literals. As GitHub does:
# `==` compares strings ignoring case, `&&`/`||` return an operand (not a boolean), a missing property is
# null, and a job's `if:` is true when its value is truthy.

TOKEN = re.compile(r"\s*(?:(?P<op>==|!=|&&|\|\||!|\(|\))|'(?P<str>(?:[^']|'')*)'|(?P<num>\d+(?:\.\d+)?)"
                   r"|(?P<word>[A-Za-z_][\w-]*(?:\.[A-Za-z_*][\w-]*)*))")


def tokens(expression: str) -> list[tuple[str, Any]]:
    out, position = [], 0
    expression = expression.strip()
    while position < len(expression):
        match = TOKEN.match(expression, position)
        assert match and match.end() > position, f"cannot read {expression[position:]!r}"
        position = match.end()
        if match.group("op"):
            out.append(("op", match.group("op")))
        elif match.group("str") is not None:
            out.append(("value", match.group("str").replace("''", "'")))
        elif match.group("num"):
            out.append(("value", float(match.group("num"))))
        else:
            out.append(("path", match.group("word")))
    return out


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and value == value


def equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    return bool(left == right)


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """The value of a GitHub expression (with or without `${{ }}`) in `context`."""
    inner = expression.strip()
    if inner.startswith("${{") and inner.endswith("}}"):
        inner = inner[3:-2]
    items = tokens(inner)
    position = 0

    def peek() -> tuple[str, Any] | None:
        return items[position] if position < len(items) else None

    def take() -> tuple[str, Any]:
        nonlocal position
        position += 1
        return items[position - 1]

    def primary() -> Any:
        kind, value = take()
        if (kind, value) == ("op", "!"):
            return not truthy(primary())
        if (kind, value) == ("op", "("):
            result = either()
            assert take() == ("op", ")"), inner
            return result
        if kind == "value":
            return value
        if value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value]
        found: Any = context
        for part in value.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        return found

    def comparison() -> Any:
        left = primary()
        while peek() in (("op", "=="), ("op", "!=")):
            operator = take()[1]
            right = primary()
            left = equal(left, right) if operator == "==" else not equal(left, right)
        return left

    def both() -> Any:
        left = comparison()
        while peek() == ("op", "&&"):
            take()
            right = comparison()
            left = right if truthy(left) else left
        return left

    def either() -> Any:
        left = both()
        while peek() == ("op", "||"):
            take()
            right = both()
            left = left if truthy(left) else right
        return left

    result = either()
    assert peek() is None, f"unread tokens in {inner!r}: {items[position:]}"
    return result


@pytest.mark.parametrize(
    ("expression", "context", "expected"),
    [
        ("${{ a == 'X' }}", {"a": "x"}, True),
        ("a != 'x' || b", {"a": "x", "b": "fallback"}, "fallback"),
        ("a && b", {"a": "", "b": "y"}, ""),
        ("!(a.b.c == 'q') && true", {"a": {}}, True),
        ("a.b == null", {}, True),
    ],
)
def test_the_evaluator_follows_githubs_rules(expression: str, context: dict[str, Any], expected: Any) -> None:
    assert evaluate(expression, context) == expected


def pull_request(head_repository: str) -> dict[str, Any]:
    """The `github` context of a pull_request run in octo/models whose head branch lives in `head_repository`."""
    head = {"ref": "feature", "sha": "1" * 40, "repo": {"full_name": head_repository}}
    base = {"ref": "main", "sha": "0" * 40, "repo": {"full_name": "octo/models"}}
    event = {"action": "synchronize", "number": 7, "pull_request": {"number": 7, "head": head, "base": base},
             "repository": {"full_name": "octo/models"}}
    return {"github": {"event_name": "pull_request", "repository": "octo/models", "event": event}}


def self_hosted_jobs(project: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(workflow, job, job) for every job of a pull_request-triggered workflow that runs on a self-hosted label."""
    found = []
    for path in sorted((project / ".github" / "workflows").glob("*.yml")):
        workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
        on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
        if "pull_request" not in on and "pull_request_target" not in on:
            continue
        for name, job in workflow["jobs"].items():
            if "self-hosted" in str(job.get("runs-on", "")):
                found.append((path.name, name, job))
    return found


def test_a_forks_pull_request_never_runs_on_the_self_hosted_runner(bakes: dict[str, Path]) -> None:
    jobs = self_hosted_jobs(bakes["gpu-runner"])
    assert [(workflow, name) for workflow, name, _ in jobs] == [("retrain.yml", "train")]
    _, _, train = jobs[0]
    assert train["runs-on"] == ["self-hosted", GPU_LABEL]
    condition = str(train.get("if", "true"))
    assert not truthy(evaluate(condition, pull_request("mallory/models"))), condition
    assert truthy(evaluate(condition, pull_request("octo/models"))), condition
    assert truthy(evaluate(condition, pull_request("Octo/Models"))), "GitHub compares names ignoring case"
    for event in ("push", "workflow_dispatch"):
        context = {"github": {"event_name": event, "repository": "octo/models", "event": {}}}
        assert truthy(evaluate(condition, context)), f"{event}: main's own retrain must run"
    # The default bake's training job (GitHub's runner) carries the same condition: one workflow file.
    default = yaml.safe_load((bakes["default"] / ".github" / "workflows" / "retrain.yml").read_text("utf-8"))
    assert default["jobs"]["train"]["if"] == train["if"]


def test_pull_request_secrets_wait_behind_an_environment(bakes: dict[str, Path]) -> None:
    """A same-repository pull request's code gets the remote's credentials only through a protected
    environment of its own; main's runs use another (README: "Set up the repository on GitHub")."""
    train = yaml.safe_load((bakes["default"] / ".github" / "workflows" / "retrain.yml").read_text("utf-8"))
    environment = train["jobs"]["train"]["environment"]
    assert evaluate(environment, pull_request("octo/models")) == "retrain-pull-request"
    push = {"github": {"event_name": "push", "repository": "octo/models", "ref": "refs/heads/main", "event": {}}}
    assert evaluate(environment, push) == "retrain"
    assert "secrets." in json.dumps(train["jobs"]["train"]["env"])
