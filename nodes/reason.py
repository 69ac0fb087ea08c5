"""reason: the current prompt's reasoning and answers on the whole selection pool.

Every candidate is compared with the current prompt on the same pool examples, so the current
prompt's results must cover the pool. A prompt accepted from a race already has them in the run's
rollout cache; only what is missing (the initial prompt, a human edit) reaches the model.
"""

from __future__ import annotations

from gradprompt.nodes.session import rollouts, scored, selection_pool, session


def reason(state: dict, store=None) -> dict:
    sess = session(state["settings"])
    prompt = tuple(state["prompt"])
    current = rollouts(sess, store, selection_pool(sess), [prompt], label="current prompt on the pool")[0]
    return {"current": scored(sess, prompt, "current", current, step=state["step"], correct=current.correct)}
