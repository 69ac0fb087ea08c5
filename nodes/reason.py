"""reason: the current prompt's reasoning and answers on the whole selection pool.

Every candidate is compared with the current prompt on the same pool examples, so the current
prompt's results must cover the pool. A prompt accepted from a race already has them in the run's
rollout cache; only what is missing (the initial prompt, a human edit) reaches the model.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.session import rollouts, scored, selection_pool
from gradprompt.nodes.state import State


def reason(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    prompt = tuple(state["prompt"])
    current = rollouts(sess, selection_pool(sess), [prompt], label="current prompt on the pool")[0]
    return {"current": scored(sess, prompt, "current", current, step=state["step"], correct=current.correct)}
