"""retrieve: GPO's update direction: past prompts similar to the current one, with their scores.

Same task first, then (with cross-task reuse on) other tasks of the same model. The retrieved
prompts feed the step twice: their tokens at the edited position (token moves) or the first token
of their word at the edited slot (word moves) join the gradient candidates, and the best-scoring
one within the step's edit limit is offered as a whole prompt (:class:`nodes.proposers.Retrieval`).
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.proposers import Retrieval
from gradprompt.nodes.runtime import word_units
from gradprompt.nodes.session import splits_fingerprint, step_edit_limit, trajectory_of
from gradprompt.nodes.state import State
from gradprompt.nodes.step import offer


def _token_at(sess, ids: list[int], position: int) -> int | None:
    """The retrieved prompt's token at the edited position, or its word's first token at the slot."""
    if sess.settings.moves == "tokens":
        return ids[position] if position < len(ids) else None
    spans = word_units.units(sess.rt.tokenizer, ids)
    return ids[spans[position].start] if position < len(spans) and spans[position].is_word else None


def retrieve(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    st = sess.settings
    limit = step_edit_limit(sess, state["step"])
    trajectory = trajectory_of(sess)
    text = state["prompt_text"]
    out = {
        "edit_limit": limit,
        "retrieved": [],
        "extra_tokens": [],
        "offered": [],
        "rejected": {},
        "refine_reply": "",
        "refine_error": "",
    }
    if trajectory is None or st.retrieve_k == 0:
        return out
    splits = splits_fingerprint(sess)
    hits = trajectory.similar(
        text, model=st.model, k=st.retrieve_k, task=sess.task.name, exclude_text=text, splits=splits
    )
    if st.cross_task and len(hits) < st.retrieve_k:
        hits += trajectory.similar(
            text, model=st.model, k=st.retrieve_k - len(hits), exclude_task=sess.task.name, exclude_text=text
        )
    retrieved = [
        {
            "text": h.record.text,
            "prompt": h.record.prompt_ids,
            "task": h.record.task,
            "score": h.record.score,
            "accuracy": h.record.accuracy,
            "examples": h.record.examples,
            "dev_accuracy": h.record.dev_accuracy,
            "similarity": round(h.similarity, 4),
            "run_id": h.record.run_id,
        }
        for h in hits
    ]
    scored = sorted((r for r in retrieved if r["score"] is not None), key=lambda r: r["score"])
    allowed = sess.rt.allowed_tokens
    tokens = []
    for r in scored:
        token = _token_at(sess, r["prompt"], state["position"])
        if token is not None and bool(allowed[token]) and token not in tokens:
            tokens.append(token)
    current = {
        "text": text,
        "prompt": state["prompt"],
        "task": sess.task.name,
        "score": None,
        "current": True,
    }
    offered, notes = offer(sess, {**state, "retrieved": retrieved, "edit_limit": limit}, [Retrieval()])
    rejected = {"disfluent": notes["disfluent"]} if notes.get("disfluent") else {}
    return {
        **out,
        "retrieved": [current, *retrieved],
        "extra_tokens": tokens[:3],
        "offered": offered,
        "rejected": rejected,
    }
