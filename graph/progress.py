"""A run's progress bar, fed by the graph's node updates: step, phase and best score so far.

It is the top line of the shared display, so the bars of long evaluations inside a node (dev and
test evaluation in ``finalize``) show beneath it.
"""

from __future__ import annotations

from contextlib import ExitStack

from graph.builder import STEP_NODES
from nodes.runtime.progress_bars import Bar, progress_bar

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
        names = [n for n, _ in STEP_NODES]
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
