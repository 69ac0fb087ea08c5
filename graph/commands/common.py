"""What several commands share: where runs live, the progress display, the terminal approver and
the printed result of a run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gradprompt.graph.summary import summary_lines


def common_flags() -> argparse.ArgumentParser:
    """--run-dir, --checkpointer and --json: every command that touches runs takes these."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("where runs live and how results print")
    group.add_argument("--run-dir", help="folder of runs and their checkpoints (default $GRADPROMPT_HOME/runs)")
    group.add_argument(
        "--checkpointer",
        default=None,
        help="postgresql://USER@HOST:PORT/DB: keep checkpoints and the run index in PostgreSQL so every machine "
        "sees every run (default $GRADPROMPT_CHECKPOINTER, else the SQLite file in --run-dir)",
    )
    group.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return common


def where(args: argparse.Namespace) -> dict[str, Any]:
    """Where the runs live: the runs folder, or the checkpoint database when one is named."""
    return {"run_dir": getattr(args, "run_dir", None), "checkpointer": getattr(args, "checkpointer", None)}


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_result(result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
        return
    s = result.scores
    print()
    print(
        f"run {result.run_id}: {result.steps} steps ({result.stop_reason}), {result.variant} variant, "
        f"model {result.model}"
    )
    lines = summary_lines(result.final)
    if not lines:  # a run without a final choice (it never finished)
        lines = [f"initial dev {fmt(s['baseline']['dev'])}  final dev {fmt(s['best']['dev'])}"]
    for line in lines:
        print(line)
    print(f"({result.dev_examples} dev and {result.test_examples} test examples)")


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    update = None


def progress(args: argparse.Namespace):
    """A progress display fed by node updates: a bar on a terminal, plain lines in logs and pipes,
    nothing under --json."""
    from gradprompt.graph.progress import PlainProgress, RunProgress
    from gradprompt.nodes.runtime.progress_bars import shown

    if getattr(args, "json", False):
        return _Null()
    return RunProgress() if shown() else PlainProgress()


def approver(args: argparse.Namespace):
    """Ask at the terminal when there is one (the progress display pauses while asking); otherwise
    runs wait for `gradprompt approve`."""
    if getattr(args, "json", False) or not sys.stdin.isatty():
        return None
    from gradprompt.graph.approval_terminal import terminal_approver

    return terminal_approver()
