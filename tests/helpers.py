"""What the integration tests share: tiny run settings, the CLI in a subprocess, local servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from servers import free_port  # noqa: F401 (the tests' name for it)

# A run small enough to take seconds per step on a CPU with the bundled model.
SMALL_RUN = {
    "train": 4,  # the selection pool: every candidate that survives is rolled out on all of it
    "dev": 4,
    "test": 4,
    "batch_size": 2,
    "max_new_tokens": 8,
    "n_evaluate": 2,
    "top_k": 5,
    "keep_best": 3,
    "refine_max_new_tokens": 32,
    # the mechanics tests race only the gradient's candidates from the given prompt; the baseline
    # race and phrase edits have their own tests (test_search_defaults_smollm2.py)
    "baselines": False,
    "phrase_edits": 0,
}

# A run of a few seconds on the tiny in-process model (no refinement, no trajectory store).
TINY_MODEL_RUN = {
    "train": 3,
    "dev": 3,
    "test": 3,
    "batch_size": 2,
    "max_new_tokens": 3,
    "n_evaluate": 2,
    "top_k": 4,
    "refine": False,
    "trajectory": False,
}


def flags(settings: dict) -> list[str]:
    """Settings as `gradprompt optimize` flags."""
    out = []
    for key, value in settings.items():
        name = key.replace("_", "-")
        out.append(f"--{name}" if value is True else f"--no-{name}" if value is False else f"--{name}={value}")
    return out


def _command(args, run_dir) -> list[str]:
    return [sys.executable, "-m", "gradprompt.graph.cli", *args, "--run-dir", str(run_dir)]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run_cli(*args: str, run_dir, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess whose stdin, stdout and stderr are not terminals; ``env`` adds to
    the test environment."""
    return subprocess.run(
        _command(args, run_dir),
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_cli(*args: str, run_dir) -> subprocess.Popen:
    return subprocess.Popen(
        _command(args, run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        stdin=subprocess.DEVNULL,
    )


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, what: str, limit: float = 600) -> None:
    """Poll ``ready`` until it holds; fail early if ``proc`` dies, and after ``limit`` seconds with
    the last error ``ready`` raised (a server not up yet refuses connections; any other error shows
    in the failure instead of vanishing)."""
    deadline = time.time() + limit
    last: Exception | None = None
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode} (last check: {last!r})")
        try:
            if ready():
                return
        except Exception as exc:  # not up yet, or broken: kept for the failure message
            last = exc
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"{what}: not ready after {limit}s (last check: {last!r})") from last


def pause_inside_step(proc: subprocess.Popen, step: int, values: Callable[[], dict]) -> None:
    """Until the run in ``proc`` is inside ``step`` (the steps before it finished, the step's own
    nodes not yet through; ``values`` reads its state), and leave the process stopped there
    (SIGSTOP). Each check stops the process first, so what it sees still holds when the caller
    acts: a check of a running process could see the step and find the run finished a moment later."""

    def inside() -> bool:
        proc.send_signal(signal.SIGSTOP)
        seen = False
        try:
            now = values()
            seen = now.get("step") == step and bool(now.get("next")) and now["next"] != ["finalize"]
        finally:
            if not seen:
                proc.send_signal(signal.SIGCONT)
        return seen

    wait_until(inside, proc, f"the run inside step {step}", limit=900)


def serve(command: list[str], port: int, what: str, **popen) -> subprocess.Popen:
    """Start a local server and return once its port accepts connections."""
    proc = subprocess.Popen(command, **popen)

    def accepts() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(accepts, proc, what)
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def venv_tool(name: str) -> str:
    """A console script installed next to this Python (chroma, langgraph)."""
    import shutil
    from pathlib import Path

    return shutil.which(name) or str(Path(sys.executable).parent / name)


# Metrics of a user's own, importable by path (`helpers:...`) as runs store them.
METRIC_CALLS: list[tuple[str, str]] = []


def always_right(prediction: str, gold: str) -> bool:
    METRIC_CALLS.append((prediction, gold))
    return True


def half_credit(prediction: str, gold: str) -> float:
    return 0.5 if prediction.strip() else 0.0


def node_runs(run_id: str, run_dir=None, checkpointer: str | None = None):
    """(step, next node) of every checkpoint in a run's history: a node that ran twice (a resume
    that started over) shows twice."""
    from collections import Counter

    from gradprompt.graph.threads import config, run_graph
    from gradprompt.store.checkpoints import open_runs

    with run_graph(open_runs(run_dir, checkpointer)) as graph:
        return Counter((s.values.get("step"), tuple(s.next)) for s in graph.get_state_history(config(run_id)))


def call_cli(*args: str, run_dir, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI's entry point called in this process (no interpreter start-up, no model reload):
    for errors that come before any model work. Exit code, stdout and stderr as from a subprocess;
    an uncaught exception reads as exit code 1 with its traceback, as it would there."""
    import io
    import traceback
    from contextlib import redirect_stderr, redirect_stdout

    from gradprompt.graph.cli import main

    out, err = io.StringIO(), io.StringIO()
    command = [*args, "--run-dir", str(run_dir)]
    code = 0
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main(command)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(command, code, out.getvalue(), err.getvalue())


def unavailable(what: str, *, setup_provides: bool) -> None:
    """Skip a test whose outside resource is absent here, saying which (``make test`` lists skip
    reasons); where the resource must be there (``make setup`` installs it on this platform, or
    in a CI run, which sets ``CI``), fail instead, so a test that should run is never skipped."""
    if os.environ.get("CI") or (setup_provides and sys.platform != "win32"):
        pytest.fail(f"{what} (make setup provides it here; a skip would hide the test)")
    pytest.skip(what)
