"""evaluate: race the step's candidate prompts against the current one on the selection pool
(official variant), or pass the gradient's top candidate through unevaluated (paper variant): the
race phase of :mod:`nodes.step`, whose racing rule is in :mod:`nodes.decisions`."""

from __future__ import annotations

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.state import State
from gradprompt.nodes.step import variant_of


def evaluate(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    raced = variant_of(sess).race(sess, state, list(state.get("offered", [])))
    rejected = dict(state.get("rejected") or {})
    for reason, n in raced.rejected.items():
        rejected[reason] = rejected.get(reason, 0) + n
    out = {"evaluated": raced.evaluated, "rejected": rejected}
    if raced.slices is not None:
        out["race_slices"] = raced.slices
    return out
