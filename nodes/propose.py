"""propose: the step's own candidates: GReaTer's gradient-ranked edits at the edited slot (whole
words by default, single tokens as in the paper) and model-free phrase edits, through the one
proposer interface (:mod:`nodes.proposers`). They join the retrieved prompt in ``offered``."""

from __future__ import annotations

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.proposers import PhraseEdits, StepView, gradient_proposer
from gradprompt.nodes.state import State

WHOLE_RANKING = 1 << 30  # the paper variant scans the whole gradient ranking for an edit not held before


def propose(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    st = sess.settings
    view = StepView(sess, state)
    official = st.variant == "official"
    scan = not official and st.moves == "tokens"
    proposers = [gradient_proposer(st, WHOLE_RANKING if scan else st.n_evaluate)]
    if official:
        proposers.append(PhraseEdits(st.phrase_edits))
    new = [c.to_state() for p in proposers for c in p.propose(view)]
    rejected = dict(state.get("rejected") or {})
    disfluent = view.notes.pop("disfluent", 0)
    if disfluent:
        rejected["disfluent"] = rejected.get("disfluent", 0) + disfluent
    return {"offered": [*state.get("offered", []), *new], "rejected": rejected, **view.notes}
