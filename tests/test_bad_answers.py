"""Bad answers stop the bake with one clear line and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import bake
from cookiecutter.exceptions import FailedHookException

BAD_ANSWERS = [
    ({"package_name": "fraud-detection"}, "not a Python identifier"),
    ({"package_name": "1fraud"}, "not a Python identifier"),
    ({"package_name": "class"}, "Python keyword"),
    ({"package_name": "match"}, "Python keyword"),
    ({"package_name": "json"}, "would shadow the module 'json'"),
    ({"package_name": "torch"}, "would shadow the module 'torch'"),
    ({"package_name": "dvc"}, "would shadow the module 'dvc'"),
    ({"package_name": "mlflow"}, "would shadow the module 'mlflow'"),
    ({"package_name": "FraudDetection"}, "must be lower case"),
    ({"project_slug": "fraud detection"}, "no spaces or path separators"),
    ({"project_slug": "fraud/detection"}, "no spaces or path separators"),
    ({"project_slug": "../escape"}, "no spaces or path separators"),
    ({"python_version": "2.7"}, "python_version '2.7' is not one of"),
    ({"python_version": "3.9"}, "python_version '3.9' is not one of"),
    ({"accelerator": "tpu"}, "accelerator 'tpu' is not one of"),
    ({"license": "GPL-9"}, "license 'GPL-9' is not one of"),
    ({"include_notebooks": "maybe"}, "include_notebooks 'maybe' is not one of"),
    ({"mlflow_tracking_uri": "mlflow.db"}, "mlflow_tracking_uri"),
    ({"dvc_remote_url": "my remote"}, "dvc_remote_url"),
    ({"ci_gpu_runner_label": "gpu; rm -rf /"}, "ci_gpu_runner_label"),
    ({"author_email": "nobody"}, "not an e-mail address"),
]


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS, ids=[str(a) for a, _ in BAD_ANSWERS])
def test_bad_answer_is_rejected_and_leaves_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], answers: dict[str, str], message: str
) -> None:
    with pytest.raises(FailedHookException):
        bake(tmp_path, **answers)
    assert list(tmp_path.iterdir()) == [], "a rejected bake left files behind"
    errors = capfd.readouterr().err
    assert message in errors
    assert len([line for line in errors.splitlines() if line.startswith("ERROR:")]) == 1, errors
