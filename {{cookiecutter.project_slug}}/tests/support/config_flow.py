"""Where a stage's config object goes: `python tests/support/config_flow.py pipelines/train.py OUT [overrides]`.

Runs the stage's `main` as `run_stage` does, with a profiler that counts, per module of the package, the calls
that enter it from another module with the composed config itself among their arguments (sub-nodes such as
cfg.model are values handed down, and not counted). Writes {module: entries} as JSON to OUT.
"""

from __future__ import annotations

import json
import runpy
import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from omegaconf import DictConfig

from {{ cookiecutter.package_name }}.stage import run_stage

PACKAGE = "{{ cookiecutter.package_name }}"


def counting_entries(main: Any, out: Path) -> Any:
    """`main` with the profiler on while it runs; the counts are written even when it fails."""

    def probed(cfg: DictConfig) -> int:
        entries: Counter[str] = Counter()

        def profile(frame: FrameType, event: str, _: Any) -> None:
            if event != "call" or frame.f_back is None:
                return
            module = str(frame.f_globals.get("__name__", ""))
            if not module.startswith(f"{PACKAGE}.") or frame.f_back.f_globals.get("__name__") == module:
                return
            if any(value is cfg for value in frame.f_locals.values()):
                entries[module] += 1

        sys.setprofile(profile)
        try:
            return int(main(cfg))
        finally:
            sys.setprofile(None)
            out.write_text(json.dumps(dict(entries), indent=1), encoding="utf-8")

    return probed


if __name__ == "__main__":
    stage_file, out, *overrides = sys.argv[1:]
    main = runpy.run_path(stage_file)["main"]
    sys.exit(run_stage(Path(stage_file).stem, counting_entries(main, Path(out)), overrides))
