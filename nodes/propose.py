"""propose: the step's own candidates: GReaTer's gradient-ranked edits at the edited slot (whole
words by default, single tokens as in the paper) and model-free phrase edits, offered through
:func:`nodes.step.offer` by the variant's proposers. They join the retrieved prompt in ``offered``."""

from __future__ import annotations

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.state import State
from gradprompt.nodes.step import offer, variant_of


def propose(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    new, notes = offer(sess, state, variant_of(sess).proposers(sess.settings))
    rejected = dict(state.get("rejected") or {})
    disfluent = notes.pop("disfluent", 0)
    if disfluent:
        rejected["disfluent"] = rejected.get("disfluent", 0) + disfluent
    return {"offered": [*state.get("offered", []), *new], "rejected": rejected, **notes}
