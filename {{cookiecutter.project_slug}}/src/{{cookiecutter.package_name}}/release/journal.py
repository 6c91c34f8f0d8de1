"""What a `package` run is about to create in stores it shares with other projects, written before it does.

A BentoML store (and an MLflow server) can hold the items of many projects, runners and people. Labels
such as a registry version or a model md5 repeat across projects, so they can never tell whose
unfinished item is whose. A package run writes its journal first, naming the exact tags it will
create; the next run removes what that journal names and nothing else, unless the run got as far as
recording its result (see `package.recover`).
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from ..errors import PipelineError
from ..files import write_atomically
from ..lineage import project_id
from ..serving.api import MODEL_NAME, SERVICE_NAME
from ..training.tracking import resolved_uri, shown_uri

# Git-ignored and beside the deployment's own state: it describes this checkout's stores, not a result.
JOURNAL_FILE = Path("bentos/.state/package-journal.json")


class JournalError(PipelineError):
    pass


@dataclass(frozen=True)
class Journal:
    """One package run: its id is the version of both the bento model and the bento it creates."""

    id: str
    model_tag: str
    bento_tag: str

    @classmethod
    def new(cls) -> Journal:
        # BentoML's own version format (16 lowercase base32 characters), drawn at random, not from the
        # clock and host, so two projects or runners never pick the same one.
        version = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()
        return cls(id=version, model_tag=f"{MODEL_NAME}:{version}", bento_tag=f"{SERVICE_NAME}:{version}")

    @property
    def tags(self) -> tuple[str, str]:
        """The bento first: removing it before its model never leaves a bento without its model."""
        return self.bento_tag, self.model_tag


def write_journal(journal: Journal, path: Path = JOURNAL_FILE) -> None:
    """Atomically: a kill while writing leaves no journal or the whole one, never a torn one."""
    write_atomically(path, json.dumps(asdict(journal), indent=2) + "\n")


def read_journal(path: Path = JOURNAL_FILE) -> Journal | None:
    """The journal of a package run that did not finish, None when the last run finished (or none ran)."""
    if not path.exists():
        return None
    try:
        journal = Journal(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        raise JournalError(
            f"{path} is not a package journal ({error}): it names what an unfinished package run may have left "
            "in the BentoML store. Remove those items by hand (`bentoml list`, `bentoml models list`), delete "
            "the file, and package again"
        ) from error
    expected = Journal(journal.id, f"{MODEL_NAME}:{journal.id}", f"{SERVICE_NAME}:{journal.id}")
    if journal != expected:
        raise JournalError(f"{path} names {journal.tags}, not the tags of run {journal.id}: it was not written here")
    return journal


def clear_journal(path: Path = JOURNAL_FILE) -> None:
    path.unlink(missing_ok=True)


def project_identity(cfg: DictConfig) -> dict[str, str]:
    """Labels that say which project made an item in a shared store: its id, name, folder and registry.

    They tell a person whose item it is (`bentoml list -o json`); deleting is decided by the journal.
    The id is the one the tracking server knows the project by (`tracking.claim`): clones and copies share it.
    """
    return {
        "project_id": project_id(),
        "project": str(cfg.project),
        "project_dir": str(Path.cwd().resolve()),
        "tracking_uri": shown_uri(resolved_uri(cfg)),
    }
