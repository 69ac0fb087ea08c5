"""prepare: turn the run's settings into its starting state (the initial prompt as token ids)."""

from __future__ import annotations

from nodes.session import scored, session


def prepare(state: dict) -> dict:
    sess = session(state["settings"])
    ids = sess.rt.encode_prompt(sess.settings.initial_prompt)
    start = scored(sess, ids, "initial", step=0)
    return {
        "step": 0,
        "prompt": list(ids),
        "prompt_text": start["text"],
        "position": 0,
        "baseline": start,
        "history": [],
        "best": [],
        "stale": 0,
        "done": sess.settings.steps == 0,
        "stop_reason": "no steps asked for" if sess.settings.steps == 0 else "",
        "timings": {},
    }
