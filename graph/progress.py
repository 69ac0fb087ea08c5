"""A run's progress, fed by the graph's node updates: a live bar on a terminal, plain lines elsewhere.

On a terminal the bar is the top line of the shared display, so the bars of long evaluations inside
a node (dev and test evaluation in ``finalize``) show beneath it. When stderr is a pipe or a log
file a bar would be noise, but silence for minutes reads as a hang, so one plain line per step
says what the step did.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from typing import TextIO

from gradprompt.graph.builder import STEP_NODES
from gradprompt.nodes.runtime.progress_bars import Bar, progress_bar

_PHASES = {"advance": "next step", "prepare": "loading", "finalize": "dev/test evaluation"}


class RunProgress:
    def __init__(self) -> None:
        self._stack = ExitStack()
        self._bar: Bar | None = None
        self._step = 0
        self._best: float | None = None

    def __enter__(self) -> RunProgress:
        self._bar = self._stack.enter_context(progress_bar("starting", total=None, unit="nodes", keep=True))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def update(self, node: str, update: dict, settings: dict) -> None:
        """Advance by one node; the bar counts nodes, so it moves within a step too."""
        per_step = len(STEP_NODES)
        steps = settings.get("steps", 0)
        total = steps * per_step + 2
        if "step" in update:
            self._step = update["step"]
        for c in update.get("best", [])[:1]:
            self._best = c.get("accuracy")
        names = list(STEP_NODES)
        if node == "finalize":
            done = total
        elif node in ("prepare", "advance"):
            done = 1 + self._step * per_step
        else:
            done = 1 + self._step * per_step + names.index(node) + 1
        best = "-" if self._best is None else f"{self._best:.3f}"
        self._bar.update(
            total=total,
            completed=min(done, total),
            description=f"step {min(self._step + 1, steps)}/{steps}",
            info=f"{_PHASES.get(node, node)} done, best pool accuracy {best}",
        )


class PlainProgress:
    """One line per finished step (and per phase around the steps) for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._started = time.monotonic()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def _say(self, text: str) -> None:
        stream = self._stream or sys.stderr
        print(f"[{time.monotonic() - self._started:6.0f}s] {text}", file=stream, flush=True)

    def update(self, node: str, update: dict, settings: dict) -> None:
        steps = settings.get("steps", 0)
        if node == "prepare":
            self._say(f"model and task loaded; {steps} steps to go" if steps else "model and task loaded")
        elif node == "record" and update.get("history"):
            self._say(step_line(update["history"][-1], steps))
        elif node == "advance" and update.get("done") and update.get("stop_reason"):
            self._say(f"stopping: {update['stop_reason']}; scoring the best prompts on dev, then test")
        elif node == "finalize":
            self._say("done")


def _right(c: dict) -> str:
    if c.get("right") is None or not c.get("examples"):
        return "-"
    return f"{c['right']}/{c['examples']}"


def step_line(entry: dict, steps: int) -> str:
    """What a step did, in one line: kept or changed, and on what evidence."""
    accepted, current = entry["accepted"], entry["current"]
    seconds = sum(entry.get("timings", {}).values())
    racers = len(entry.get("candidates", []))
    if entry["changed"]:
        what = f"changed to {accepted['text']!r} ({_right(accepted)} right vs {_right(current)})"
    else:
        what = f"kept {entry['prompt_text']!r} ({_right(current)} right; {racers} candidates raced)"
    return f"step {entry['step'] + 1}/{steps}: {what}, {seconds:.0f}s"
