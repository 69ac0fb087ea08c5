"""Advisory locks that keep two processes off the same run or the same store folder.

A lock is an ``flock`` on a small file that also names its holder (pid, host, what it does, since
when), so a refusal can say who holds it. The kernel drops an ``flock`` when its process dies, so a
lock left by a killed process is stale by construction: the next process takes it over and
rewrites the holder line. Within one process the same lock is re-entrant (a run that holds its
store folder may open the store again from any node).
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gradprompt.errors import GradpromptError

_held: dict[object, tuple[object, int]] = {}  # lock key -> (what holds it, depth) in this process
_guard = threading.Lock()

_ATTEMPTS = 5  # tries over ~0.2 s before a lock counts as held by another process
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_run_id(run_id: str) -> str:
    """A run id names a folder: letters, digits, '.', '_' and '-' only, so it never leaves the runs
    folder ('/' or '..' would); checked before the id touches any path."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise GradpromptError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' (at most 128, no '/' or '..'), "
            "e.g. --run-id compare-try-2"
        )
    return run_id


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextmanager
def held_once(key: object, acquire: Callable[[], object], release: Callable[[object], None]) -> Iterator[None]:
    """Re-entrant within this process: the first hold of ``key`` calls ``acquire`` (which raises to
    refuse), the last release calls ``release`` on what it returned; nested holds share it."""
    with _guard:
        if key in _held:
            handle, depth = _held[key]
            _held[key] = (handle, depth + 1)
        else:
            _held[key] = (acquire(), 1)
    try:
        yield
    finally:
        with _guard:
            handle, depth = _held[key]
            if depth > 1:
                _held[key] = (handle, depth - 1)
            else:
                del _held[key]
                release(handle)


def file_lock(path: Path, doing: str, refusal: str):
    """Hold an exclusive lock on ``path`` for the block. If another process holds it, raise one
    clear error: ``refusal`` followed by who holds it (``refusal`` should name the fix)."""
    key = str(path.resolve())

    def acquire() -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _ATTEMPTS - 1:
                    os.close(fd)
                    raise GradpromptError(f"{refusal} (held by {_holder(path)})") from None
                time.sleep(0.05)  # a status probe (holder_of) holds it for an instant only
        os.ftruncate(fd, 0)
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, {doing}, since {since}\n".encode())
        return fd

    return held_once(("file", key), acquire, os.close)  # closing the only descriptor releases the flock


def holder_of(path: Path) -> str | None:
    """Who holds the lock at ``path`` right now (the holder line), or None when nobody does. A
    probe: it takes the lock for an instant when it is free, never waits."""
    key = str(path.resolve())
    with _guard:
        if ("file", key) in _held:
            return _holder(path)
    if not path.is_file():
        return None
    fd = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(path)
    finally:
        os.close(fd)  # also drops the shared lock taken by the probe
    return None


def run_lock_path(folder: Path, run_id: str) -> Path:
    return folder / check_run_id(run_id) / ".lock"


def run_lock(folder: Path, run_id: str, doing: str) -> Iterator[None]:
    """The lock a process holds while it drives, answers or forks run ``run_id``."""
    return file_lock(
        run_lock_path(folder, run_id),
        f"{doing} {run_id}",
        f"run {run_id} is in use by another process; wait for it to finish or stop it (Ctrl-C), then try again",
    )


def store_folder_lock(folder: Path) -> Iterator[None]:
    """The lock of a trajectory store folder: an embedded Chroma folder is for one process at a
    time; processes that write at the same time share a ``chroma run`` server instead."""
    return file_lock(
        folder / "gradprompt.lock",
        "using the trajectory store",
        f"the trajectory store folder {folder} is in use by another process; to share a store between "
        f"processes serve it with `chroma run --path {folder} --host 127.0.0.1 --port 8000` and pass "
        "--store http://127.0.0.1:8000 to every run",
    )


@contextmanager
def serialized(path: Path) -> Iterator[None]:
    """Wait for, then hold, an exclusive lock on ``path``: for short set-up work (creating a
    database's tables) that two processes starting at once must not do at the same time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
