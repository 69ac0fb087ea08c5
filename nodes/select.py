"""select: the update this step proposes, by the run's acceptance rule (:func:`nodes.decisions.accept`)
over the race's finishers (official variant), or the gradient argmax (paper variant). A person may
still overrule it before it is applied."""

from __future__ import annotations

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.decisions import Contender, RaceResult, accept
from gradprompt.nodes.evaluate import pool_rollout
from gradprompt.nodes.session import rollouts, selection_pool
from gradprompt.nodes.state import State


def select(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    evaluated = state["evaluated"]
    current = state["current"]
    if sess.settings.variant == "paper":
        if not evaluated:
            return {"decision": {**current, "reason": "no candidate"}}
        return {"decision": {**evaluated[0], "reason": "paper variant: the gradient argmax, unevaluated"}}
    pool = selection_pool(sess)
    base = pool_rollout(sess, state["prompt"])
    contenders = []
    for c in evaluated:
        got = rollouts(sess, pool[: c["examples"]], [c["prompt"]])[0]  # cached by the race
        contenders.append(Contender(tuple(c["prompt"]), got.outcomes, "" if c["finished"] else c["stopped"]))
    decision = accept(
        tuple(state["prompt"]), base.outcomes, RaceResult(contenders, len(pool), []), sess.settings.acceptance
    )
    if not decision.moved:
        return {"decision": {**current, "reason": decision.reason}}
    chosen = next(c for c in evaluated if tuple(c["prompt"]) == decision.prompt)
    return {"decision": {**chosen, "reason": decision.reason}}
