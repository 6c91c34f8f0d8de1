"""The grace-period reaper: a detached process that stops the previous slot once its grace period is over.

`apply` starts it when it leaves a slot running for rollback; it exits when nothing is left to retire.
Run by hand: `python -m <package>.deploy.reaper bentos/deployment.yaml`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .engine import LocalEngine
from .state import DeployError

POLL_S = 1.0


def main(argv: list[str]) -> int:
    """Poll until no idle slot is waiting to retire."""
    engine = LocalEngine(Path(argv[0]))
    while True:
        try:
            due = engine.reap()
        except DeployError as error:
            print(f"reaper: {error}", file=sys.stderr)
            due = POLL_S
        if due is None:
            return 0
        time.sleep(min(max(due, 0.05), POLL_S))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
