"""record: keep the finished step in the run's history and the best prompts seen so far.

The history lives in the checkpointed state, so ``runs show`` reads it back from any checkpoint;
it holds scores and token ids, not reasoning, to keep every snapshot small. The best-prompt list
takes only prompts scored on the whole selection pool (see :func:`nodes.decisions.update_best`).
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.decisions import update_best
from gradprompt.nodes.proposers import source_counts
from gradprompt.nodes.session import Session, trajectory_of, trajectory_record
from gradprompt.nodes.state import State

_SLIM = (
    "prompt",
    "text",
    "source",
    "move",
    "known_words",
    "token",
    "gradient",
    "fluency_cost",
    "accuracy",
    "right",
    "examples",
    "gold_logprob",
    "nll",
    "score",
    "step",
    "by",
    "finished",
    "stopped",
    "only_new_right",
    "only_current_right",
    "reason",
)


def _slim(c: dict) -> dict:
    return {k: c[k] for k in _SLIM if k in c}


def _on_pool(c: dict, pool_size: int) -> bool:
    return c.get("examples") == pool_size and c.get("accuracy") is not None


def record(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    st = sess.settings
    decision = state["decision"]
    changed = decision["prompt"] != state["prompt"]
    evaluated = state["evaluated"]
    humans = [c for c in evaluated if c.get("source") == "human"]
    raced = evaluated if st.variant == "official" else humans
    sources = source_counts([*state.get("offered", []), *humans], raced, evaluated, decision, changed)
    entry = {
        "step": state["step"],
        "position": state["position"],
        "prompt": state["prompt"],
        "prompt_text": state["prompt_text"],
        "current": _slim(state["current"]),
        "candidates": [_slim(c) for c in state["evaluated"]],
        "accepted": _slim(decision),
        "changed": changed,
        "variant": st.variant,
        "edit_limit": state.get("edit_limit"),
        "race_slices": state.get("race_slices", []),
        "retrieved": [
            {k: r.get(k) for k in ("text", "task", "score", "accuracy", "dev_accuracy", "similarity")}
            for r in state.get("retrieved", [])
        ],
        "rejected": dict(state.get("rejected") or {}),
        "sources": sources,
        "refine_error": state.get("refine_error", ""),
        "timings": dict(state.get("timings", {})),
    }
    _write_trajectory(sess, state, decision)
    pool_size = state["current"].get("examples", 0)
    full = [_slim(c) for c in [state["current"], *state["evaluated"]] if _on_pool(c, pool_size)]
    best, improved = update_best(
        state.get("best", []),
        full,
        st.keep_best,
    )
    deleted = list(state.get("deleted_phrases", []))
    if changed and decision.get("removed") and decision["removed"] not in deleted:
        deleted.append(list(decision["removed"]))  # a phrase edit may add it back later
    return {
        "history": [*state.get("history", []), entry],
        "best": best,
        "stale": 0 if improved else state.get("stale", 0) + 1,
        "deleted_phrases": deleted,
    }


def _write_trajectory(sess: Session, state: dict, decision: dict) -> None:
    """Every evaluated candidate of the step, accepted or not, goes to the shared trajectory."""
    trajectory = trajectory_of(sess)
    if trajectory is None:
        return
    rows = []
    for c in [state["current"], *state["evaluated"]]:
        rows.append(
            trajectory_record(
                sess,
                state,
                text=c["text"],
                prompt_ids=list(c["prompt"]),
                source=c["source"],
                accepted=c["prompt"] == decision["prompt"] and c["source"] == decision["source"],
                score=c.get("score"),
                accuracy=c.get("accuracy"),
                examples=c.get("examples"),
                decided_by=decision.get("by", "optimizer"),
            )
        )
    trajectory.add(rows)
