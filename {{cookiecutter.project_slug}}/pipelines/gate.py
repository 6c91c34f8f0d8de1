"""DVC stage `gate`: pass or stop the candidate -> reports/gate.json; exits 1 when any check fails."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.files import write_json, write_summary
from {{ cookiecutter.package_name }}.release.gate import Check, failed_gate, render_table, run_gate
from {{ cookiecutter.package_name }}.stage import run_stage


def main(cfg: DictConfig) -> int:
    report_path = Path(cfg.paths.reports) / "gate.json"
    try:
        report = run_gate(cfg)
    except PipelineError as error:
        # Fail closed, and leave a report that says why for the PR comment and the package stage.
        write_json(report_path, failed_gate(str(error)))
        raise
    write_json(report_path, report)
    checks = report["checks"]
    write_summary(
        Path(cfg.paths.metrics) / "gate.json",
        {"passed": report["passed"], "checks": len(checks), "failed": sum(not check["passed"] for check in checks)},
    )
    print(render_table([Check(**check) for check in report["checks"]]))
    champion = report["champion"]
    print(f"champion: {champion['source']} {champion['reference']}" if champion else "champion: none yet")
    print(f"gate {'PASSED' if report['passed'] else 'FAILED'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(run_stage("gate", main))
