"""Who approved a release: what GitHub's approvals API says for this run, or the release stops.

    gh api repos/OWNER/REPO/actions/runs/RUN_ID/approvals > approvals.json
    python tools/approver.py approvals.json --environment production    # prints the login(s)

The release workflow records the answer on the promoted model version (`promote.py --approved-by`):
an audit trail names a person only as the system of record names them, never a guess such as the
user who triggered the run. Exit 2 with one `ERROR:` line when the answer is an API error, not the
approvals list, or holds no approval for the environment. Several people who approved deployments
to the environment in this run (a re-run asks again) are all named, comma-separated, in the order
the API lists them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

# A GitHub login: letters, digits and hyphens, 39 at most; nothing that could break the output line.
LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")


class NoApprover(Exception):
    """The approvals API's answer names nobody who approved this environment; the message says why."""


def approvers(answer: Any, environment: str) -> list[str]:
    """The logins of the approved reviews of `environment` in a parsed approvals API answer, in its order."""
    if isinstance(answer, dict) and "message" in answer:  # the API's error body
        raise NoApprover(f"the approvals API answered an error: {answer['message']}")
    if not isinstance(answer, list) or not all(isinstance(review, dict) for review in answer):
        raise NoApprover("the approvals API answer is not a list of reviews")
    logins: list[str] = []
    for review in answer:
        names = {place.get("name") for place in review.get("environments") or [] if isinstance(place, dict)}
        if review.get("state") != "approved" or environment not in names:
            continue
        login = (review.get("user") or {}).get("login")
        if not isinstance(login, str) or not LOGIN.fullmatch(login):
            raise NoApprover(f"an approval of {environment} names no valid user login: {review.get('user')!r}")
        if login not in logins:
            logins.append(login)
    if not logins:
        raise NoApprover(
            f"no approval of the {environment} environment in this run ({len(answer)} reviews): "
            "set Required reviewers on it (Settings -> Environments)"
        )
    return logins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("answer", type=Path, help="the approvals API's JSON answer (gh api .../approvals > FILE)")
    parser.add_argument("--environment", required=True, help="the deployment environment the job waited for")
    args = parser.parse_args(argv)
    try:
        try:
            answer = json.loads(args.answer.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise NoApprover(f"cannot read the approvals API answer {args.answer}: {error}") from None
        print(",".join(approvers(answer, args.environment)))
    except NoApprover as error:
        print(f"ERROR: {error}; the release stops rather than record a guess", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
