"""The bento's entry point: the service lives in the library; its settings are the serve.json beside this file."""

from pathlib import Path

from {{ cookiecutter.package_name }}.service import build_service
from {{ cookiecutter.package_name }}.serving import SERVE_FILE

FraudDetector = build_service(Path(__file__).with_name(SERVE_FILE))

__all__ = ["FraudDetector"]
