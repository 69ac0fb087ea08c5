"""select: the update this step proposes, by the run's acceptance rule over the race's finishers
(official variant) or the gradient argmax (paper variant): the decide phase of :mod:`nodes.step`.
A person may still overrule it before it is applied."""

from __future__ import annotations

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.state import State
from gradprompt.nodes.step import variant_of


def select(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    return {"decision": variant_of(sess).decide(sess, state, state["evaluated"])}
