"""Forking: a new run from the checkpoint where another began a step, optionally with an edited prompt."""

from __future__ import annotations

import time

from gradprompt.errors import GradpromptError
from gradprompt.graph.builder import FIRST_STEP_NODE, LAST_STEP_NODE
from gradprompt.graph.run_inputs import with_run_inputs
from gradprompt.graph.threads import config, run_graph
from gradprompt.nodes.session import session
from gradprompt.nodes.settings import RunSettings
from gradprompt.store.checkpoints import new_run_id, open_runs
from gradprompt.store.locks import check_run_id


def fork(
    run_id: str,
    step: int,
    prompt: str | None = None,
    *,
    run_dir=None,
    checkpointer: str | None = None,
    steps: int | None = None,
    new_id: str | None = None,
) -> str:
    """Start a new run from the checkpoint where ``run_id`` began step ``step``, optionally with a
    hand-edited prompt and a new step budget. The original run is left untouched."""
    runs = open_runs(run_dir, checkpointer)
    info = runs.read_info(run_id)
    new_id = check_run_id(new_id) if new_id else new_run_id(f"{run_id.rsplit('-', 3)[0]}-fork")
    with runs.lock(run_id, "fork"), runs.lock(new_id, "fork"), run_graph(runs) as graph:
        found = None
        for snap in graph.get_state_history(config(run_id)):
            if snap.values.get("step") == step and snap.next and snap.next[0] in (FIRST_STEP_NODE, "finalize"):
                found = snap
                break
        if found is None:
            done = graph.get_state(config(run_id)).values.get("step", 0)
            raise GradpromptError(f"run {run_id} has no checkpoint at the start of step {step}: choose 0..{done}")
        values = dict(found.values)
        with_run_inputs(runs, run_id, values["settings"])
        settings = RunSettings.model_validate(values["settings"])
        if steps is not None:
            settings = settings.model_copy(update={"steps": steps})
        if settings.steps <= step:
            raise GradpromptError(
                f"the fork starts at step {step} but the budget is {settings.steps} steps: pass --steps"
            )
        if prompt is not None:
            rt = session(settings).rt
            ids = rt.encode_prompt(prompt)
            values.update(prompt=list(ids), prompt_text=rt.decode(ids), position=min(values["position"], len(ids)))
        values.update(run_id=new_id, settings=settings.model_dump(), done=False, stop_reason="", final={})
        runs.write_info(
            new_id,
            {
                "run_id": new_id,
                "settings": settings.model_dump(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "parent": {"run_id": run_id, "step": step, "prompt": prompt},
                "task": info["settings"]["task"],
            },
        )
        rows = runs.read_examples(run_id)
        if rows is not None:
            runs.write_examples(new_id, rows)
        graph.update_state(config(new_id), values, as_node=LAST_STEP_NODE)
    return new_id
