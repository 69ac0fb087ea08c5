"""Shared fixtures: hermetic environment, the tiny in-process model, and the real bundled model."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # the workers already fill the cores: a second compute thread each (and in each CLI subprocess
    # they start) only spins against the other worker
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# Runs and the trajectory store of the tests never touch the user's own folders.
os.environ["GRADPROMPT_HOME"] = tempfile.mkdtemp(prefix="gradprompt-tests-")
sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("GRADPROMPT_DATA_DIR", ROOT.parent / "shared" / "data"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heaviest tests first (their ``heavy(seconds)`` mark), the rest in file order: with each
    worker holding at most two tests queued, no long test starts late while the other worker sits
    idle. The order depends only on the marks, so every worker collects the same list."""

    def seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("heavy")
        return 0.0 if mark is None else float(mark.args[0] if mark.args else mark.kwargs["seconds"])

    items.sort(key=lambda item: -seconds(item))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        from helpers import unavailable

        unavailable(
            f"benchmark data folder {DATA_DIR} is absent (set GRADPROMPT_DATA_DIR to use it)", setup_provides=False
        )
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_rt():
    from tiny_model import tiny_loaded

    from gradprompt.nodes.runtime.model_runtime import ModelRuntime

    return ModelRuntime(tiny_loaded())


@pytest.fixture(scope="session")
def tiny_rt64():
    """Double precision, for finite-difference checks."""
    import torch
    from tiny_model import tiny_loaded

    from gradprompt.nodes.runtime.model_runtime import ModelRuntime

    return ModelRuntime(tiny_loaded(dtype=torch.float64))


@pytest.fixture(scope="session")
def smollm2_rt():
    from gradprompt.nodes.runtime.model_runtime import ModelRuntime

    return ModelRuntime.from_spec("smollm2", device="cpu")


@pytest.fixture()
def on_tiny_model(tiny_rt, monkeypatch):
    """Runs built from settings get the tiny in-process model instead of loading one."""
    import gradprompt.nodes.session

    monkeypatch.setattr(gradprompt.nodes.session, "_runtime", lambda *args: tiny_rt)
    return tiny_rt
