"""record: keep the finished step in the run's history and the best prompts seen so far.

The history lives in the checkpointed state, so ``runs show`` reads it back from any checkpoint;
it holds scores and token ids, not reasoning, to keep every snapshot small.
"""

from __future__ import annotations

from nodes.session import Session, session, trajectory_of

_RETRIEVED = ("text", "task", "score", "similarity")
_SLIM = ("prompt", "text", "source", "token", "gradient", "accuracy", "nll", "score", "step", "by")


def _slim(c: dict) -> dict:
    return {k: c[k] for k in _SLIM if k in c}


def record(state: dict) -> dict:
    sess = session(state["settings"])
    st = sess.settings
    decision = state["decision"]
    entry = {
        "step": state["step"],
        "position": state["position"],
        "prompt": state["prompt"],
        "prompt_text": state["prompt_text"],
        "current": _slim(state["current"]),
        "candidates": [_slim(c) for c in state["evaluated"]],
        "accepted": _slim(decision),
        "changed": decision["prompt"] != state["prompt"],
        "variant": st.variant,
        "edit_limit": state.get("edit_limit"),
        "retrieved": [
            {k: r.get(k) for k in ("text", "task", "score", "similarity")} for r in state.get("retrieved", [])
        ],
        "rejected": dict(state.get("rejected") or {}),
        "timings": dict(state.get("timings", {})),
    }
    _write_trajectory(sess, state, decision)
    pool = {tuple(b["prompt"]): b for b in state.get("best", [])}
    before = min((b["score"] for b in pool.values()), default=float("inf"))
    for c in [state["current"], *state["evaluated"]]:
        if c.get("score") is None:
            continue
        key = tuple(c["prompt"])
        if key not in pool or c["score"] < pool[key]["score"]:
            pool[key] = _slim(c)
    best = sorted(pool.values(), key=lambda c: c["score"])[: st.keep_best]
    improved = bool(best) and best[0]["score"] < before
    return {
        "history": [*state.get("history", []), entry],
        "best": best,
        "stale": 0 if improved else state.get("stale", 0) + 1,
    }


def _write_trajectory(sess: Session, state: dict, decision: dict) -> None:
    """Every evaluated candidate of the step, accepted or not, goes to the shared trajectory."""
    store = trajectory_of(sess)
    if store is None:
        return
    from store.trajectory import TrajectoryRecord

    rows = []
    for c in [state["current"], *state["evaluated"]]:
        rows.append(
            TrajectoryRecord(
                text=c["text"],
                prompt_ids=list(c["prompt"]),
                task=sess.task.name,
                model=sess.settings.model,
                run_id=state["run_id"],
                step=state["step"],
                source=c["source"],
                accepted=c["prompt"] == decision["prompt"] and c["source"] == decision["source"],
                score=c.get("score"),
                accuracy=c.get("accuracy"),
                decided_by=decision.get("by", "optimizer"),
            )
        )
    store.add(rows)
