"""The check that reads a baked project's pytest output fails on a failure, an error or an unexpected skip."""

from __future__ import annotations

import pytest
from conftest import assert_tests_passed

GPU_SKIP = "SKIPPED [1] tests/training/test_training.py:267: needs a CUDA GPU\n"


def test_passed_runs_and_gpu_skips_are_accepted() -> None:
    assert_tests_passed("....\n4 passed in 1.00s\n")
    assert_tests_passed(f"...s\n{GPU_SKIP}3 passed, 1 skipped, 2 deselected in 1.00s\n")


@pytest.mark.parametrize(
    "output",
    [
        "...F\n3 passed, 1 failed in 1.00s\n",
        "...E\n3 passed, 1 error in 1.00s\n",
        "...s\nSKIPPED [1] tests/project/test_notebooks.py:37: data missing: run `dvc pull`\n"
        "3 passed, 1 skipped in 1s\n",
        "...s\n3 passed, 1 skipped in 1.00s\n",  # a skip whose reason was not listed
        "no tests ran in 0.01s\n",
        "2 passed, 1 xfailed in 1.00s\n",
    ],
    ids=["failed", "error", "unexpected-skip", "unlisted-skip", "nothing-ran", "xfail"],
)
def test_anything_else_fails_the_check(output: str) -> None:
    with pytest.raises(AssertionError):
        assert_tests_passed(output)
