"""What runs exist and what each holds: the run list, each run's status, and a run's latest state.

A status comes from what is already recorded, never from guessing: the run lock names the process
driving the run, the checkpoint holds a pending approval interrupt or the error a node raised, and
a final choice in the state means the run finished.
"""

from __future__ import annotations

import ast
import re

from gradprompt.errors import GradpromptError
from gradprompt.graph.approval_protocol import pending_request
from gradprompt.graph.threads import config, run_graph
from gradprompt.store.checkpoints import open_runs

_HOLDER = re.compile(r"^(?P<who>pid \d+ on [^,]+), (?P<doing>[^,]*?)(?:, since (?P<since>.+))?$")


def _who(holder: str) -> str:
    """'pid N on HOST, since T' from a lock's holder line."""
    m = _HOLDER.match(holder.strip())
    if m is None:
        return holder.strip()
    return m["who"] + (f", since {m['since']}" if m["since"] else "")


_REPR = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)\((?P<args>.*)\)$", re.DOTALL)


def first_line(error: BaseException | str) -> str:
    """'Name: first line of the message' of an error, also from the repr a checkpoint keeps of it;
    gradprompt's own errors are already sentences and keep no name."""
    name, message = type(error).__name__, str(error)
    if isinstance(error, str):
        name, message = "", error
        m = _REPR.match(error.strip())
        if m:
            try:
                args = ast.literal_eval(m["args"] + ",")
                name, message = m["name"], str(args[0]) if args else ""
            except (ValueError, SyntaxError):
                pass
    lines = message.strip().splitlines() or [""]
    own = name in ("GradpromptError", "") or name.endswith(("Stopped", "Pending"))
    return ((f"{name}: " if not own else "") + lines[0]).strip()[:200]


def run_status(runs, run_id: str, snapshot) -> dict:
    """What the run is doing: ``status`` is one of finished, running, waiting for approval,
    failed, stopped (resumable) or not started; ``status_text`` says it in one line with the
    holder or the error."""
    values = snapshot.values or {}
    if values.get("final") and not snapshot.next:
        return {"status": "finished", "status_text": "finished"}
    holder = runs.holder(run_id)
    request = pending_request(snapshot)
    if holder is not None:
        who = _who(holder)
        if request is not None:
            return {
                "status": "waiting for approval",
                "status_text": f"waiting for approval of step {request.get('step')} (asked by {who})",
                "holder": holder,
            }
        return {"status": "running", "status_text": f"running ({who})", "holder": holder}
    if request is not None:
        return {
            "status": "waiting for approval",
            "status_text": f"waiting for approval of step {request.get('step')}",
        }
    error = next((t.error for t in snapshot.tasks if t.error is not None), None)
    if error is not None:
        line = first_line(error)
        return {"status": "failed", "status_text": f"failed: {line}", "error": line}
    if not values:
        return {"status": "not started", "status_text": "not started"}
    return {"status": "stopped", "status_text": "stopped (resumable)"}


def run_values(run_id: str, *, run_dir=None, checkpointer=None) -> dict:
    """The latest checkpointed state of a run, with its status."""
    runs = open_runs(run_dir, checkpointer)
    runs.read_info(run_id)
    with run_graph(runs) as graph:
        snapshot = graph.get_state(config(run_id))
    return {**snapshot.values, "next": list(snapshot.next), **run_status(runs, run_id, snapshot)}


def list_runs(*, run_dir=None, checkpointer=None) -> list[dict]:
    """Every run in the folder (or checkpoint database) with its task, progress and status."""
    out = []
    runs = open_runs(run_dir, checkpointer)
    with run_graph(runs) as graph:
        for run_id in runs.list_ids():
            try:
                info = runs.read_info(run_id)
            except GradpromptError as exc:  # one damaged run.json must not hide the other runs
                out.append({"run_id": run_id, "status": "damaged", "problem": str(exc)})
                continue
            snap = graph.get_state(config(run_id))
            values = snap.values or {}
            final = values.get("final") or {}
            out.append(
                {
                    "run_id": run_id,
                    "task": info["settings"]["task"],
                    "model": info["settings"]["model"],
                    "variant": info["settings"]["variant"],
                    "created": info.get("created"),
                    "parent": info.get("parent"),
                    "steps": values.get("step", 0),
                    "of_steps": info["settings"]["steps"],
                    **run_status(runs, run_id, snap),
                    "next": list(snap.next),
                    "best_dev": (final.get("best") or {}).get("dev_accuracy"),
                    "best_test": (final.get("best") or {}).get("test_accuracy"),
                }
            )
    return out


def step_examples(run_id: str, n: int, *, run_dir=None, checkpointer=None) -> dict[int, list[dict]]:
    """For every finished step, the first ``n`` pool examples of the step's current prompt: the
    model's reasoning, the text read as its answer and the gold answer, read back from the run's
    rollout cache (the tokenizer turns reasoning tokens into text; nothing is generated again)."""
    from gradprompt.graph.run_inputs import with_run_inputs
    from gradprompt.nodes.session import rollout_cache, selection_pool, session

    runs = open_runs(run_dir, checkpointer)
    runs.read_info(run_id)
    with run_graph(runs) as graph:
        values = graph.get_state(config(run_id)).values
    if not values.get("history"):
        return {}
    with_run_inputs(runs, run_id, values["settings"])
    out: dict[int, list[dict]] = {}
    with runs.persistence() as (_, store):
        sess = session(values["settings"], cache_store=store)
        pool = selection_pool(sess)[: max(n, 0)]
        cache = rollout_cache(sess)
        for h in values["history"]:
            got = cache.get(h["prompt"], pool)
            out[h["step"]] = [
                {
                    "question": ex.question,
                    "gold": ex.answer,
                    "reasoning": None if o is None else sess.rt.decode(o.reasoning),
                    "answer": None if o is None else o.answer,
                    "correct": None if o is None else o.correct,
                }
                for ex, o in zip(pool, got, strict=True)
            ]
    return out
