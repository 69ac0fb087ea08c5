"""retrieve: GPO's update direction: past prompts similar to the current one, with their scores.

Same task first, then (with cross-task reuse on) other tasks of the same model. The retrieved
prompts feed the step twice: their tokens at the edited position join the gradient candidates,
and the best-scoring one within the step's edit limit is evaluated as a whole prompt.
"""

from __future__ import annotations

from nodes.edit_limit import word_distance
from nodes.session import session, splits_fingerprint, step_edit_limit, trajectory_of


def retrieve(state: dict) -> dict:
    sess = session(state["settings"])
    st = sess.settings
    limit = step_edit_limit(sess, state["step"])
    store = trajectory_of(sess)
    text = state["prompt_text"]
    out = {
        "edit_limit": limit,
        "retrieved": [],
        "extra_tokens": [],
        "extra_candidates": [],
        "rejected": {},
        "refine_reply": "",
        "refine_error": "",
    }
    if store is None or st.retrieve_k == 0:
        return out
    splits = splits_fingerprint(sess)
    hits = store.similar(text, model=st.model, k=st.retrieve_k, task=sess.task.name, exclude_text=text, splits=splits)
    if st.cross_task and len(hits) < st.retrieve_k:
        hits += store.similar(
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
    position, allowed = state["position"], sess.rt.allowed_tokens
    tokens = []
    for r in scored:
        ids = r["prompt"]
        if position < len(ids) and bool(allowed[ids[position]]) and ids[position] not in tokens:
            tokens.append(ids[position])
    within = [r for r in scored if word_distance(r["text"], text) <= limit and r["prompt"]]
    extra = [{"prompt": within[0]["prompt"], "source": "retrieval"}] if within else []
    current = {
        "text": text,
        "prompt": state["prompt"],
        "task": sess.task.name,
        "score": None,
        "current": True,
    }
    return {**out, "retrieved": [current, *retrieved], "extra_tokens": tokens[:3], "extra_candidates": extra}
