"""Processes that share a run, a runs folder or a store folder: the second user of a run or of a
store folder is refused with the fix named, and runs sharing one SQLite file both finish intact."""

from __future__ import annotations

import signal
import sqlite3

import pytest
from helpers import SMALL_RUN, call_cli, flags, run_cli, start_cli, wait_until

from gradprompt.graph import list_runs, run_values

pytestmark = pytest.mark.model

SMALL_FLAGS = flags(SMALL_RUN)
TINY_FLAGS = flags({**SMALL_RUN, "train": 3, "dev": 3, "test": 3, "max_new_tokens": 6, "refine": False})


def _refused(out, needle: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr


@pytest.mark.heavy(25)
def test_a_second_process_on_a_running_run_or_its_store_folder_is_refused(tmp_path):
    store = str(tmp_path / "store")
    args = ["optimize", "--task", "builtin:compare", "--steps", "40", *SMALL_FLAGS, "--store", store]
    proc = start_cli(*args, "--run-id", "busy", run_dir=tmp_path)
    try:
        wait_until(lambda: run_values("busy", run_dir=tmp_path).get("step", 0) >= 1, proc, "run busy at step 1", 600)
        _refused(run_cli("resume", "busy", run_dir=tmp_path), "run busy is in use by another process")
        _refused(call_cli("approve", "busy", "--action", "approve", run_dir=tmp_path), "run busy is in use")
        _refused(call_cli("runs", "fork", "busy", "--step", "1", run_dir=tmp_path), "run busy is in use")
        second = run_cli("optimize", "--task", "builtin:arithmetic", *SMALL_FLAGS, "--store", store, run_dir=tmp_path)
        _refused(second, "chroma run --path")
        assert proc.poll() is None  # the first process was not disturbed
    finally:
        proc.send_signal(signal.SIGINT)  # stop at the next node boundary
        _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    assert [r["run_id"] for r in list_runs(run_dir=tmp_path)] == ["busy"]  # no run was made by a refusal
    # released on exit: the run answers again (it is not waiting for an approval)
    _refused(call_cli("approve", "busy", "--action", "approve", run_dir=tmp_path), "not waiting for an approval")


@pytest.mark.heavy(60)
def test_two_runs_in_one_runs_folder_both_finish_intact(tmp_path):
    procs = {
        name: start_cli(
            "optimize",
            "--task",
            task,
            "--steps",
            "2",
            *TINY_FLAGS,
            "--store",
            str(tmp_path / f"store-{name}"),
            "--run-id",
            name,
            run_dir=tmp_path,
        )
        for name, task in (("first", "builtin:compare"), ("second", "builtin:arithmetic"))
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=1800)
        assert proc.returncode == 0, (name, err)
    runs = {r["run_id"]: r for r in list_runs(run_dir=tmp_path)}
    assert {k: (v["status"], v["steps"]) for k, v in runs.items()} == {
        "first": ("finished", 2),
        "second": ("finished", 2),
    }
    for name in procs:
        values = run_values(name, run_dir=tmp_path)
        assert [h["step"] for h in values["history"]] == [0, 1]
        assert values["final"]["best"]["test"]["accuracy"] is not None
    with sqlite3.connect(tmp_path / "checkpoints.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
