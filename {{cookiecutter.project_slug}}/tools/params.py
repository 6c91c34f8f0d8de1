"""Compose conf/ into params.yaml, or check that they agree.

python tools/params.py                    # write params.yaml from conf/
python tools/params.py trainer=gpu        # with Hydra overrides
python tools/params.py --check            # exit 1 and show the diff when they drift
"""

from __future__ import annotations

import argparse
import sys

from hydra.errors import HydraException

from {{ cookiecutter.package_name }}.config import PARAMS_FILE, compose_params, params_drift


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.max_epochs=3")
    parser.add_argument("--check", action="store_true", help="fail when params.yaml differs from conf/")
    args = parser.parse_args(argv)
    if args.check:
        if args.overrides:
            parser.error("--check compares against conf/ as committed; it takes no overrides")
        drift = params_drift()
        if drift:
            print(
                "params.yaml does not match conf/. Edit conf/, then run `python tools/params.py`.\n" + drift,
                file=sys.stderr,
            )
            return 1
        print("params.yaml matches conf/")
        return 0
    try:
        composed = compose_params(args.overrides)
    except HydraException as error:  # unknown group option, bad override syntax, missing config
        print(f"cannot compose conf/ with {args.overrides}: {error}", file=sys.stderr)
        return 2
    PARAMS_FILE.write_text(composed, encoding="utf-8")
    print(f"wrote {PARAMS_FILE} from conf/" + (f" with {' '.join(args.overrides)}" if args.overrides else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
