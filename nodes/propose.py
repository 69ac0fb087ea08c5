"""propose: GReaTer's token candidates at the edited position, ranked by the one-hot gradient of the
answer loss taken through the current prompt's own reasoning."""

from __future__ import annotations

import random

from nodes.greater import propose as greater_propose
from nodes.session import session, step_examples


def propose(state: dict) -> dict:
    sess = session(state["settings"])
    step = state["step"]
    proposal = greater_propose(
        sess.rt,
        sess.task.answer_format,
        sess.settings,
        step_examples(sess, step),
        tuple(state["prompt"]),
        state["position"],
        state["reasonings"],
        random.Random(f"{sess.settings.seed}:{step}:groups"),
        extra_tokens=state.get("extra_tokens", ()),
    )
    return {
        "proposal": {
            "position": proposal.position,
            "current_token": proposal.current_token,
            "base_prompt": list(proposal.base_prompt),
            "candidates": proposal.candidates,
            "gradients": proposal.gradients,
            "ranked": proposal.ranked,
        }
    }
