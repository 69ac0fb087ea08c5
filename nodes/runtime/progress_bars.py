"""Progress bars for long operations (model conversion, decoding a split, benchmark loops).

All bars share one live rich display on stderr, so a bar opened while another is showing (the
decode of a dev split inside a run's bar, a task's run inside a benchmark's bar) appears beneath
it instead of fighting it for the terminal. Bars are silent when stderr is not a terminal or
inside :func:`quiet` (``--json``), so piped output and logs stay clean.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

_lock = threading.RLock()
_console: Console | None = None
_quiet = 0
_live: Progress | None = None
_open = 0


class RateColumn(ProgressColumn):
    """Items per second in the bar's own unit (rows/s, tasks/min for slow loops)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "")
        if not speed or not unit:
            return Text("")
        if speed < 0.1:
            return Text(f"{speed * 60:.1f} {unit}/min", style="progress.data.speed")
        return Text(f"{speed:.1f} {unit}/s", style="progress.data.speed")


def use_console(console: Console | None) -> None:
    """Send bars to ``console`` (None: stderr). Lets tests render bars into a string."""
    global _console
    _console = console


def console() -> Console:
    return _console or Console(stderr=True)


@contextmanager
def quiet(enabled: bool = True) -> Iterator[None]:
    """No bars inside this block (when ``enabled``): for ``--json`` and other machine output."""
    global _quiet
    with _lock:
        _quiet += int(enabled)
    try:
        yield
    finally:
        with _lock:
            _quiet -= int(enabled)


def shown() -> bool:
    """Whether a bar opened now would be drawn."""
    return not _quiet and console().is_terminal


@contextmanager
def paused() -> Iterator[None]:
    """Stop redrawing the live display for the block, so a question asked at the terminal stays on
    screen while it is answered; the display resumes beneath it afterwards."""
    with _lock:
        live = _live
        if live is not None:
            live.stop()
    try:
        yield
    finally:
        with _lock:
            if live is not None and live is _live:
                live.start()


class Bar:
    """One line of the shared display; a no-op when bars are off."""

    def __init__(self, progress: Progress | None, task_id) -> None:
        self._progress = progress
        self._task = task_id

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, **fields) -> None:
        """Change ``description``, ``total``, ``completed`` or an extra field such as ``info``."""
        if self._progress is not None:
            self._progress.update(self._task, **fields)


def _display() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console(),
        transient=False,
    )


@contextmanager
def progress_bar(
    description: str, total: float | None = None, unit: str = "", info: str = "", keep: bool = False
) -> Iterator[Bar]:
    """A bar for one operation. ``total=None`` shows a spinner (unknown length). The bar leaves
    the display when done unless ``keep`` (for the outermost loop whose end result matters)."""
    global _live, _open
    if not shown():
        yield Bar(None, None)
        return
    with _lock:
        if _live is None:
            _live = _display()
            _live.start()
        progress = _live
        task_id = progress.add_task(description, total=total, unit=unit, info=info)
        progress.refresh()  # draw the new line now, not at the next tick
        _open += 1
    try:
        yield Bar(progress, task_id)
    finally:
        with _lock:
            if not keep:
                progress.remove_task(task_id)
            _open -= 1
            if _open == 0:
                progress.stop()
                _live = None
