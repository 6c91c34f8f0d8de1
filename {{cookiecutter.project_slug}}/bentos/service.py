"""The bento's entry point: the service lives in the library, where it is unit-tested."""

from {{ cookiecutter.package_name }}.serving.service import FraudDetector

__all__ = ["FraudDetector"]
