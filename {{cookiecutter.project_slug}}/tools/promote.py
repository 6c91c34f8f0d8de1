"""Make a gate-passed model version the champion (run by the release workflow after approval).

python tools/promote.py --version 3 --approved-by alice
python tools/promote.py --show          # which versions hold `challenger` and `champion`
"""

from __future__ import annotations

import argparse
import json
import sys

from omegaconf import DictConfig

from {{ cookiecutter.package_name }}.release.registry import CHALLENGER, CHAMPION, aliased_version, promote
from {{ cookiecutter.package_name }}.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", help="registry version to promote (default: the current challenger)")
    parser.add_argument("--approved-by", default="", help="who approved the release (recorded on the version)")
    parser.add_argument("--show", action="store_true", help="print the aliased versions and exit")
    args = parser.parse_args(argv)

    def act(cfg: DictConfig) -> int:
        if args.show:
            print(json.dumps({alias: aliased_version(cfg, alias) for alias in (CHALLENGER, CHAMPION)}))
            return 0
        version = args.version or aliased_version(cfg, CHALLENGER)
        if version is None:
            print("no version to promote: nothing holds the challenger alias", file=sys.stderr)
            return 1
        print(json.dumps(promote(cfg, str(version), args.approved_by), indent=2))
        return 0

    return run_stage("promote", act, argv=[])


if __name__ == "__main__":
    sys.exit(main())
