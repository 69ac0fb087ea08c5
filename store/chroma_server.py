"""Serve a trajectory store folder over HTTP for a while, so that several processes write to it.

An embedded Chroma folder is for one process at a time; a sweep with several workers on this
machine serves its store folder with ``chroma run`` on 127.0.0.1 for the sweep's duration (holding
the folder's lock, so nothing opens it embedded meanwhile) and hands the workers its URL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gradprompt.errors import GradpromptError
from gradprompt.store.locks import store_folder_lock


def chroma_command() -> str:
    """The ``chroma`` console script of this environment."""
    beside = Path(sys.executable).parent / "chroma"
    found = str(beside) if beside.is_file() else shutil.which("chroma")
    if not found:
        raise GradpromptError("the `chroma` command is not installed here: reinstall gradprompt (it needs chromadb)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serving(folder: str | os.PathLike, *, port: int | None = None, startup_s: float = 300) -> Iterator[str]:
    """Run ``chroma run --path FOLDER --host 127.0.0.1`` for the block; yields its URL."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with store_folder_lock(folder):
        port = port or free_port()
        log = open(folder / "server.log", "ab")  # noqa: SIM115 (the server writes it for its life)
        proc = subprocess.Popen(
            [chroma_command(), "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
        try:
            deadline = time.monotonic() + startup_s
            while True:
                if proc.poll() is not None:
                    raise GradpromptError(
                        f"the store server for {folder} exited at start (code {proc.returncode}); see "
                        f"{folder / 'server.log'}"
                    )
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise GradpromptError(f"the store server for {folder} did not start in time") from None
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
