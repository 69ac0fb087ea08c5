"""The storage layer stands on its own: importing every store module builds no graph and pulls in
no graph module (storage hands a checkpointer and a store to the graph layer, never the reverse)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_store_imports_without_graph(tmp_path):
    code = (
        "import sys, pkgutil, importlib, store\n"
        "for m in pkgutil.iter_modules(store.__path__): importlib.import_module(f'store.{m.name}')\n"
        "from gradprompt.store.checkpoints import open_runs\n"
        "runs = open_runs(sys.argv[1])\n"
        "with runs.persistence() as (saver, rollouts): pass\n"
        "print(sorted(m for m in sys.modules if m == 'graph' or m.startswith('graph.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
