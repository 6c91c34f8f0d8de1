"""DVC stage `gate`: pass or stop the candidate -> reports/gate.json; exits 1 when any check fails."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.release.gate import Check, failed_gate, render_table, run_gate
from {{ cookiecutter.package_name }}.stage import run_stage


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Whole or not at all: the package stage trusts what this file says."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def main(cfg: DictConfig) -> int:
    report_path = Path(cfg.paths.reports) / "gate.json"
    try:
        report = run_gate(cfg)
    except PipelineError as error:
        # Fail closed, and leave a report that says why for the PR comment and the package stage.
        write_report(report_path, failed_gate(str(error)))
        raise
    write_report(report_path, report)
    print(render_table([Check(**check) for check in report["checks"]]))
    champion = report["champion"]
    print(f"champion: {champion['source']} {champion['reference']}" if champion else "champion: none yet")
    print(f"gate {'PASSED' if report['passed'] else 'FAILED'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(run_stage("gate", main))
