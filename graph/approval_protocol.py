"""The approval protocol: a run with ``human_approval`` pauses at a LangGraph interrupt before every
update; the answer comes from an in-process approver, the terminal, or ``gradprompt approve`` (kept
beside the run until ``resume`` applies it)."""

from __future__ import annotations

from collections.abc import Callable

from gradprompt.errors import GradpromptError
from gradprompt.graph.threads import config, run_graph
from gradprompt.store.checkpoints import open_runs

Approver = Callable[[dict], dict]  # approval request -> {"action": ..., "prompt": ...}


class ApprovalPending(GradpromptError):
    """The run waits for a person's decision on an update; answer it and resume."""

    def __init__(self, run_id: str, request: dict):
        super().__init__(
            f"run {run_id} waits for approval of step {request.get('step')}: answer with "
            f"`gradprompt approve {run_id} --action approve|reject|edit [--prompt TEXT]`, "
            f"then `gradprompt resume {run_id}`"
        )
        self.run_id = run_id
        self.request = request


def pending_request(snapshot) -> dict | None:
    """The approval request a checkpointed run waits on, if any."""
    for item in getattr(snapshot, "interrupts", ()) or ():
        return item.value
    return None


def approve(run_id: str, action: str, prompt: str | None = None, *, run_dir=None, checkpointer=None) -> dict:
    """Answer the approval a run waits on, without a terminal session; ``resume`` applies it."""
    from gradprompt.nodes.approve import parse_answer

    parse_answer({"action": action, "prompt": prompt})
    runs = open_runs(run_dir, checkpointer)
    runs.read_info(run_id)
    with runs.lock(run_id, "approve"):
        with run_graph(runs) as graph:
            request = pending_request(graph.get_state(config(run_id)))
        if request is None:
            raise GradpromptError(f"run {run_id} is not waiting for an approval (see `gradprompt runs pending`)")
        answer = {"action": action, "prompt": prompt, "step": request["step"]}
        runs.write_decision(run_id, answer)
    return answer


def pending_runs(*, run_dir=None, checkpointer=None) -> list[dict]:
    """Runs waiting for a person's decision, with what they wait on."""
    out = []
    runs = open_runs(run_dir, checkpointer)
    with run_graph(runs) as graph:
        for run_id in runs.list_ids():
            request = pending_request(graph.get_state(config(run_id)))
            if request is not None:
                out.append({"run_id": run_id, "request": request, "answered": runs.read_decision(run_id)})
    return out
