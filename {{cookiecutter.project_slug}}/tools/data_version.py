"""Make a new version of the raw data (and, once, the golden set) and track it with DVC.

    python tools/data_version.py                          # first version: 100k rows, seed 1
    python tools/data_version.py --seed 2 --drift 0.3     # a shifted population
    python tools/data_version.py --seed 2 --commit        # ...and commit the .dvc pointers

Committing the changed `data/raw/*.dvc` pointer is a data-version commit: CI retrains on it.
For a table of your own, `python tools/adopt_data.py FILE --label COLUMN` (this tool then refuses).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from {{ cookiecutter.package_name }}.data import generate
from {{ cookiecutter.package_name }}.data.schema import LABEL_COLUMN


def example_generator() -> dict[str, Any]:
    """The bundled example's generator functions, looked up by name: the generate.py that tools/adopt_data.py
    writes for another dataset has none of them (it draws sample rows from the schema), and then this tool has
    nothing to make."""
    example = vars(generate)
    if "generate_transactions" not in example:
        print(
            "ERROR: tools/data_version.py makes versions of the bundled example dataset, and this project has "
            "adopted its own (conf/dataset/). A new version of your data: write it to paths.raw (conf/paths/), "
            "then `dvc add` it and commit the .dvc pointer",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return example


def run(*command: str) -> None:
    """Run a step with its output shown; a failure ends the tool with one line, not a traceback."""
    print("$", " ".join(command))
    if subprocess.run(command).returncode != 0:
        raise SystemExit(
            f"ERROR: `{' '.join(command)}` failed (see above); `python tools/init_project.py` sets up "
            "git and DVC where they are missing"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows of raw data (default 100000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of this version (default 1)")
    parser.add_argument("--drift", type=float, default=0.0, help="population shift in [0, 1] (default 0)")
    parser.add_argument("--invalid-share", type=float, default=0.002, help="share of spoilt rows to quarantine")
    parser.add_argument("--golden", action="store_true", help="regenerate the golden set too")
    parser.add_argument("--no-dvc", action="store_true", help="write the files only, no `dvc add`")
    parser.add_argument("--commit", action="store_true", help="git commit the .dvc pointers")
    args = parser.parse_args(argv)

    example = example_generator()
    paths = OmegaConf.load("params.yaml").paths
    raw, golden = Path(paths.raw), Path(paths.golden)
    rows = example["generate_transactions"](args.rows, seed=args.seed, drift=args.drift)
    frame = example["inject_invalid_rows"](rows, share=args.invalid_share, seed=args.seed)
    raw.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(raw, index=False)
    print(f"wrote {raw}: {len(frame)} rows, positive rate {frame[LABEL_COLUMN].mean():.2%}, drift {args.drift}")
    targets = [str(raw)]
    if args.golden or not golden.exists():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden_frame = example["generate_golden"]()
        golden_frame.to_parquet(golden, index=False)
        print(f"wrote {golden}: {len(golden_frame)} rows in slices {sorted(golden_frame['slice'].unique())}")
        targets.append(str(golden))
    if args.no_dvc:
        return 0
    run(sys.executable, "-m", "dvc", "add", *targets)
    pointers = [f"{target}.dvc" for target in targets]
    if args.commit:
        run("git", "add", *pointers, *{str(Path(t).parent / ".gitignore") for t in targets})
        run("git", "commit", "-m", f"data: raw v(seed={args.seed}, rows={args.rows}, drift={args.drift})")
    else:
        print(f"next: git add {' '.join(pointers)} && git commit  (a data-version commit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
