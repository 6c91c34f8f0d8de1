"""Bad answers stop the bake with one clear line and leave nothing behind."""

from __future__ import annotations

import time
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
    # cookiecutter itself refuses a value outside a choice list before any file is written.
    ({"python_version": "2.7"}, "2.7 provided for choice variable python_version"),
    ({"python_version": "3.9"}, "3.9 provided for choice variable python_version"),
    ({"accelerator": "tpu"}, "tpu provided for choice variable accelerator"),
    ({"license": "GPL-9"}, "GPL-9 provided for choice variable license"),
    ({"include_notebooks": "maybe"}, "maybe provided for choice variable include_notebooks"),
    ({"mlflow_tracking_uri": "mlflow.db"}, "mlflow_tracking_uri"),
    ({"dvc_remote_url": "my remote"}, "dvc_remote_url"),
    ({"ci_gpu_runner_label": "gpu; rm -rf /"}, "ci_gpu_runner_label"),
    ({"deploy_target": "heroku"}, "heroku provided for choice variable deploy_target"),
    ({"deploy_runner_label": ""}, "deploy_runner_label"),
    ({"deploy_runner_label": "serving, gpu"}, "deploy_runner_label"),
    ({"author_email": "nobody"}, "not an e-mail address"),
]


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS, ids=[str(a) for a, _ in BAD_ANSWERS])
def test_bad_answer_is_rejected_and_leaves_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], answers: dict[str, str], message: str
) -> None:
    with pytest.raises((FailedHookException, ValueError)) as raised:
        bake(tmp_path, **answers)
    deadline = time.monotonic() + 10  # a slug with '/' has its empty parent folders removed just after exit
    while list(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(tmp_path.iterdir()) == [], "a rejected bake left files behind"
    if raised.type is ValueError:  # refused by cookiecutter's own choice check
        assert message in str(raised.value)
        return
    errors = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert any(message in line for line in errors), errors
    # One line per problem, each a plain ERROR line (an answer derived from a bad one may add its own).
    assert errors and all(line.startswith("ERROR: ") for line in errors), errors

