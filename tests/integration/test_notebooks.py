"""The notebooks run from top to bottom, so they cannot rot.

Each runs in a kernel of its own with its own runs folder and trajectory store, so what it prints
does not depend on what other tests stored before it. The slowest cell takes about 40 s on an idle
2-core machine; the per-cell limit allows 45 times that, so a loaded machine does not fail them.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.model

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "approval_and_reuse.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_outputs_cleared_in_the_repository(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    monkeypatch.setenv("GRADPROMPT_HOME", str(tmp_path / "home"))  # the kernel inherits it
    NotebookClient(
        nb,
        timeout=1800,
        startup_timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("optimized" in o.get("text", "") or "accepted" in o.get("text", "") for o in outputs)
