"""A terminal progress bar fed by the graph's node updates: step, phase and best score so far."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from graph.builder import STEP_NODES


class RunProgress:
    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = None
        self._step = 0
        self._best: float | None = None

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def update(self, node: str, update: dict, settings: dict) -> None:
        """Advance by one node; the bar counts nodes, so it moves within a step too."""
        per_step = len(STEP_NODES)
        total = settings.get("steps", 0) * per_step + 2
        if self._task is None:
            self._task = self._progress.add_task("starting", total=total, info="")
        if "step" in update:
            self._step = update["step"]
        for c in update.get("best", [])[:1]:
            self._best = c.get("score")
        done = (
            1
            + self._step * per_step
            + (
                0
                if node in ("prepare", "advance")
                else [n for n, _ in STEP_NODES].index(node) + 1
                if node != "finalize"
                else 0
            )
        )
        if node == "finalize":
            done = total
        best = "-" if self._best is None else f"{self._best:.3f}"
        phase = {"advance": "next step", "prepare": "loading", "finalize": "dev/test evaluation"}.get(node, node)
        self._progress.update(
            self._task,
            completed=min(done, total),
            description=f"step {min(self._step + 1, settings.get('steps', 0))}/{settings.get('steps', 0)}",
            info=f"{phase} done, best minibatch score {best}",
        )
