"""propose: GReaTer's token candidates at the edited position, ranked by the one-hot gradient of the
answer loss taken through the current prompt's own reasoning on the step's gradient batch."""

from __future__ import annotations

import random

from nodes.edit_limit import positions_for_step
from nodes.greater import propose as greater_propose
from nodes.session import gradient_examples, rollouts, session, step_edit_limit


def propose(state: dict, store=None) -> dict:
    sess = session(state["settings"])
    step = state["step"]
    st = sess.settings
    limit = state.get("edit_limit", step_edit_limit(sess, step))
    examples = gradient_examples(sess, step)
    prompt = tuple(state["prompt"])
    current = rollouts(sess, store, examples, [prompt])[0]  # from the cache: reason rolled out the pool
    proposal = greater_propose(
        sess.rt,
        sess.readout,
        st,
        examples,
        prompt,
        state["position"],
        current.reasonings,
        random.Random(f"{st.seed}:{step}:groups"),
        extra_tokens=state.get("extra_tokens", ()),
        n_positions=positions_for_step(limit, st.edit_max, st.edit_min, st.edit_positions),
    )
    return {
        "proposal": {
            "position": proposal.position,
            "current_token": proposal.current_token,
            "base_prompt": list(proposal.base_prompt),
            "candidates": proposal.candidates,
            "gradients": proposal.gradients,
            "ranked": proposal.ranked,
            "more": [list(m) for m in proposal.more],
        }
    }
