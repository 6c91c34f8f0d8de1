"""The bento's entry point: the service lives in the library; its settings are the serve.json beside this file."""

from pathlib import Path

from {{ cookiecutter.package_name }}.serving.api import SERVE_FILE
from {{ cookiecutter.package_name }}.serving.service import build_service

ModelService = build_service(Path(__file__).with_name(SERVE_FILE))

__all__ = ["ModelService"]
