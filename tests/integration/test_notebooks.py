"""The notebooks run from top to bottom, so they cannot rot.

Each runs in a kernel of its own with its own runs folder, trajectory store and IPython folder,
so what it prints does not depend on what other tests (or the other test worker) stored before it.
Every cell runs as written; after the line that sizes the runs (``SMALL = dict(...)``) the test
adds one that shrinks them (fewer examples, shorter reasoning, two evaluation rounds), so the cells
exercise the same calls in less time. The slowest cell then takes about 20 s on an idle 2-core
machine; the per-cell limit allows 90 times that, so a loaded machine does not fail them.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.model

# the run size each notebook's cells get here (the notebooks themselves keep a size worth reading)
SHRINK = "SMALL.update(train=4, dev=4, test=4, batch_size=2, max_new_tokens=8, n_evaluate=2)"
SIZE_LINE = re.compile(r"^SMALL = dict\(.*\)$", re.MULTILINE)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "approval_and_reuse.ipynb"}


# What each notebook must print, line by line: a cell that fails quietly or prints something else
# leaves its line out.
Q = r"""(?:'.*'|".*")"""  # a string as repr() prints it, in either quote
EXPECTED = {
    "quickstart.ipynb": [
        r"^official variant, run \S+$",
        rf"^baseline : \{{'dev': [0-9.]+, 'test': [0-9.]+\}} {Q}$",
        rf"^optimized: \{{'dev': [0-9.]+, 'test': [0-9.]+\}} {Q}$",
        rf"^step 1 position \d+: {Q}$",
        rf"^{Q} -> .+ \{{.+\}}$",
        r"^in a chain: \[.+\]$",
        rf"^fork \S+ started from {Q}$",
    ],
    "approval_and_reuse.ipynb": [
        rf"^step 0: {Q} -> {Q}$",
        rf"^0 accepted {Q} by (human|optimizer)$",
        rf"^started from: {Q}$",
        r"^retrieved at step 0: \[.*\]$",
        rf"^[01]\.\d+ \S+ \S+ {Q}$",
    ],
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.heavy(40)
def test_notebook_runs_with_outputs_cleared_in_the_repository(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    sized = [c for c in nb.cells if c.cell_type == "code" and SIZE_LINE.search(c.source)]
    assert len(sized) == 1 and len(SIZE_LINE.findall(sized[0].source)) == 1, "one line sets the run size"
    sized[0].source = SIZE_LINE.sub(lambda m: f"{m[0]}\n{SHRINK}", sized[0].source)
    monkeypatch.setenv("GRADPROMPT_HOME", str(tmp_path / "home"))  # the kernel inherits these
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    NotebookClient(
        nb,
        timeout=1800,
        startup_timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    printed = "".join(o.get("text", "") for o in outputs)
    missing = [line for line in EXPECTED[path.name] if not re.search(line, printed, re.MULTILINE)]
    assert missing == [], printed
