"""Run and store-folder locks: refusal while held elsewhere, take-over after a kill, re-entrancy."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradprompt.errors import GradpromptError
from gradprompt.store.locks import check_run_id, run_lock, store_folder_lock

ROOT = Path(__file__).resolve().parents[2]


def _hold(kind: str, folder: Path, run_id: str = "r1") -> subprocess.Popen:
    """Another process that takes a lock, says so, and sleeps holding it."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from gradprompt.store.locks import run_lock, store_folder_lock
        lock = run_lock(Path(sys.argv[1]), {run_id!r}, "resume") if {kind!r} == "run" else \\
            store_folder_lock(Path(sys.argv[1]))
        with lock:
            print("held", flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", ".hidden", "x" * 200, "run id", "a\\b", "r..1"])
def test_run_ids_that_could_leave_the_runs_folder_are_refused(bad):
    with pytest.raises(GradpromptError, match="invalid run id"):
        check_run_id(bad)


def test_good_run_ids_pass():
    for good in ["compare-20261123-101010-abcd", "my_run.2", "A1"]:
        assert check_run_id(good) == good


def test_a_run_held_by_another_process_is_refused_with_the_holder_named(tmp_path):
    holder = _hold("run", tmp_path)
    try:
        refused = pytest.raises(GradpromptError, match=r"run r1 is in use by another process.*held by pid \d+")
        with refused, run_lock(tmp_path, "r1", "resume"):
            pass
        with run_lock(tmp_path, "r2", "resume"):  # another run is free
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    holder = _hold("run", tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock_file = tmp_path / "r1" / ".lock"
    assert f"pid {holder.pid}" in lock_file.read_text()  # the stale holder line is still there
    with run_lock(tmp_path, "r1", "resume"):
        assert f"pid {holder.pid}" not in lock_file.read_text()


def _taken_elsewhere(folder: Path) -> str:
    """What another process gets when it tries to take run r1: 'ok', or the refusal."""
    code = (
        "import sys; from pathlib import Path; from gradprompt.store.locks import run_lock\n"
        "try:\n"
        "    with run_lock(Path(sys.argv[1]), 'r1', 'resume'): print('ok')\n"
        "except Exception as exc: print(exc)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip() or out.stderr


def test_locks_are_reentrant_within_a_process_and_released_after(tmp_path):
    with run_lock(tmp_path, "r1", "optimize"):
        with run_lock(tmp_path, "r1", "approve"):
            pass
        # the inner release did not free it: the outer hold still refuses another process
        assert "run r1 is in use by another process" in _taken_elsewhere(tmp_path)
    # released: another process can take it now
    assert _taken_elsewhere(tmp_path) == "ok"


def test_a_store_folder_in_use_elsewhere_is_refused_with_the_server_named(tmp_path):
    from gradprompt.store.trajectory import TrajectoryStore

    folder = tmp_path / "store"
    TrajectoryStore(folder)  # create it while free
    holder = _hold("store", folder)
    try:
        with pytest.raises(GradpromptError, match=r"in use by another process.*chroma run --path .*--store http"):
            TrajectoryStore(folder)
        with pytest.raises(GradpromptError, match="in use"), store_folder_lock(folder):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert TrajectoryStore(folder).count() == 0  # usable again once the holder is gone
