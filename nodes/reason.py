"""reason: the current prompt's greedy reasoning and answers on this step's minibatch."""

from __future__ import annotations

from nodes.greater import rollout
from nodes.session import scored, session, step_examples


def reason(state: dict) -> dict:
    sess = session(state["settings"])
    examples = step_examples(sess, state["step"])
    prompt = tuple(state["prompt"])
    current = rollout(sess.rt, sess.task.answer_format, examples, [prompt], sess.settings.max_new_tokens)[0]
    return {
        "reasonings": [list(r) for r in current.reasonings],
        "current": scored(sess, prompt, "current", current, step=state["step"], correct=current.correct),
    }
