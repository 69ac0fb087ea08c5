"""What a run needs besides its checkpoint, made available again in the process that continues,
reads or forks it: every entry point that loads a run goes through here, so it sits below them all."""

from __future__ import annotations

from gradprompt.errors import GradpromptError


def with_run_inputs(runs, run_id: str, settings: dict) -> None:
    """Make what a run needs besides its checkpoint available in this process: the examples it
    was given in memory (kept with the run) and its metric (imported by path), each with one clear
    error when it cannot be had."""
    from gradprompt.nodes.tasks.inline import is_inline, register_rows
    from gradprompt.nodes.tasks.metric import load_metric

    task = settings.get("task", "")
    if is_inline(task):
        rows = runs.read_examples(run_id)
        if rows is None:
            raise GradpromptError(
                f"run {run_id} was started with in-memory examples, but they are not kept with it in {runs.where}: "
                "start it again with optimize(examples=...)"
            )
        register_rows(task, rows)
    if settings.get("metric"):
        load_metric(settings["metric"])
