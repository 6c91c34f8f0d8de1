"""Make this folder a git + DVC repository with its project id, as far as it is not one yet (safe to run again).

    python tools/init_project.py           # `make setup` runs it: git, DVC, the remote, the Hydra setting
    python tools/init_project.py --lenient # without DVC installed: git only, and say what is left
    python tools/init_project.py --extras  # the pip extras `make setup` installs: dev, and s3 for an s3:// remote

Only the standard library is used, so it runs before the project's own dependencies are installed.
Each step that fails ends the run with one `ERROR:` line, not a traceback.
"""

from __future__ import annotations

import argparse
import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

DEFAULT_REMOTE_NAME = "storage"
DEFAULT_REMOTE_URL = "{{ cookiecutter.dvc_remote_url }}"
FALLBACK_IDENTITY = ("{{ cookiecutter.author_name }}", "{{ cookiecutter.author_email }}")
# What a first commit of the project should hold: everything not git-ignored.
INITIAL_MESSAGE = "Initial project"
# The project's identity on shared stores (MLflow server, BentoML store): random, made once, committed, so
# every clone and copy has it and no other bake does. The package reads it (lineage.PROJECT_ID_FILE).
PROJECT_ID_FILE = ".project-id"
DVC_SETTINGS = {"core.autostage": "true", "hydra.enabled": "true"}
# The pyproject.toml extra holding DVC's plugin for a remote's URL scheme (a folder remote needs none).
REMOTE_EXTRAS = {"s3": "s3"}


class StepFailed(Exception):
    """A command failed; the message is the one line the user sees."""


def run(command: list[str], root: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()
        reason = output[-1] if output else f"exit status {result.returncode}"
        raise StepFailed(f"`{' '.join(command)}` failed: {reason}")
    return result


def dvc_command() -> list[str] | None:
    """DVC of this interpreter's environment (the project's), else one on PATH."""
    if importlib.util.find_spec("dvc") is not None:
        return [sys.executable, "-m", "dvc"]
    return ["dvc"] if shutil.which("dvc") else None


def remote_url(root: Path) -> str:
    """The default remote's URL as DVC reads it (.dvc/config, then config.local); before `dvc init`, the baked one."""
    config = configparser.ConfigParser(interpolation=None)
    config.read([root / ".dvc" / "config", root / ".dvc" / "config.local"], encoding="utf-8")
    name = config.get("core", "remote", fallback="")
    return config.get(f"'remote \"{name}\"'", "url", fallback="") or DEFAULT_REMOTE_URL


def install_extras(root: Path) -> str:
    """`dev`, plus the extra with DVC's plugin for the default remote (`dev,s3` for s3://...)."""
    scheme, separator, _ = remote_url(root).partition("://")
    extra = REMOTE_EXTRAS.get(scheme) if separator else None
    return "dev" if extra is None else f"dev,{extra}"


def git_identity(root: Path) -> list[str]:
    """`-c user.name/-c user.email` for a machine with no git identity yet; [] when one is set."""
    if run(["git", "config", "user.email"], root, check=False).returncode == 0:
        return []
    name, email = FALLBACK_IDENTITY
    return ["-c", f"user.name={name}", "-c", f"user.email={email}"]


def ensure_project_id(root: Path) -> bool:
    """Write a fresh project id where none is; True when one was written (an existing one is never replaced)."""
    path = root / PROJECT_ID_FILE
    if path.exists():
        return False
    path.write_text(uuid.uuid4().hex + "\n", encoding="utf-8")
    return True


def ensure_git(root: Path) -> bool:
    """`git init -b main` where there is no repository; True when one was created."""
    if run(["git", "rev-parse", "--is-inside-work-tree"], root, check=False).returncode == 0:
        return False
    run(["git", "init", "-q", "-b", "main"], root)
    return True


def ensure_dvc(root: Path, dvc: list[str]) -> list[str]:
    """`dvc init`, the project's settings and a default remote, each only where missing; what was done."""
    done = []
    if not (root / ".dvc" / "config").exists():
        run([*dvc, "init", "-q"], root)
        done.append("dvc init")
    for key, value in DVC_SETTINGS.items():
        current = run([*dvc, "config", key], root, check=False).stdout.strip()
        if current.lower() != value:
            run([*dvc, "config", key, value], root)
            done.append(f"dvc config {key} {value}")
    if not run([*dvc, "config", "core.remote"], root, check=False).stdout.strip():
        run([*dvc, "remote", "add", "-f", "-d", DEFAULT_REMOTE_NAME, DEFAULT_REMOTE_URL], root)
        done.append(f"dvc remote add -d {DEFAULT_REMOTE_NAME} {DEFAULT_REMOTE_URL}")
    return done


def commit(root: Path, message: str, paths: list[str]) -> bool:
    """Commit `paths` when they hold changes; True when a commit was made."""
    run(["git", "add", "-A", "--", *paths], root)
    if run(["git", "diff", "--cached", "--quiet"], root, check=False).returncode == 0:
        return False
    # The project's own hooks are not installed yet, or must not judge this bookkeeping commit.
    run(["git", *git_identity(root), "commit", "-q", "--no-verify", "-m", message], root)
    return True


def initialise(root: Path, lenient: bool) -> list[str]:
    """Bring `root` to a committed git + DVC repository; return what was done."""
    if shutil.which("git") is None:
        raise StepFailed("git is not installed: install git, then run `make setup` again")
    done = ["git init"] if ensure_git(root) else []
    if ensure_project_id(root):
        done.append(f"wrote {PROJECT_ID_FILE}")
    has_head = run(["git", "rev-parse", "--verify", "-q", "HEAD"], root, check=False).returncode == 0
    dvc = dvc_command()
    if dvc is None:
        if not lenient:
            raise StepFailed("DVC is not installed here: run `pip install -c constraints.txt -e '.[dev]'` first")
        print("DVC is not installed where this ran: `make setup` in the project finishes the DVC set-up.")
    else:
        done += ensure_dvc(root, dvc)
    if not has_head:
        if commit(root, INITIAL_MESSAGE, ["."]):
            done.append("first commit")
    else:
        if commit(root, "Set up DVC (data versioning) for this repository", [".dvc", ".dvcignore"]):
            done.append("committed the DVC set-up")
        if commit(root, "Give the project its id on shared stores", [PROJECT_ID_FILE]):
            done.append(f"committed {PROJECT_ID_FILE}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lenient", action="store_true", help="without DVC, set up git only instead of failing")
    parser.add_argument("--extras", action="store_true", help="print the pip extras to install (dev[,s3]) and stop")
    args = parser.parse_args(argv)
    root = Path.cwd()
    if args.extras:
        print(install_extras(root))
        return 0
    try:
        done = initialise(root, args.lenient)
    except StepFailed as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    print("repository ready" + (f" ({'; '.join(done)})" if done else ": nothing to do"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
