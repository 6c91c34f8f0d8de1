"""The notebooks run top to bottom on the current data version, and reach git without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks in notebooks/")


def data_missing() -> str | None:
    """Why the notebooks cannot run here (the data is not checked out), or None."""
    paths = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["paths"]
    missing = [paths[key] for key in ("raw", "golden") if not (ROOT / paths[key]).exists()]
    return f"{', '.join(missing)} missing: run `dvc pull` (or `make setup`)" if missing else None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_has_no_outputs(path: Path) -> None:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    dirty = [i for i, cell in enumerate(cells) if cell.get("outputs") or cell.get("execution_count")]
    assert not dirty, f"{path.name}: cells {dirty} keep outputs; run `nbstripout {path.relative_to(ROOT)}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs(path: Path) -> None:
    import nbclient  # dev dependencies: a missing one fails here, as a missing data version does below
    import nbformat

    reason = data_missing()
    if reason:
        pytest.fail(reason)
    notebook = nbformat.read(path, as_version=4)
    # Run where Jupyter would: in notebooks/. Executed in memory; the file is not rewritten.
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
