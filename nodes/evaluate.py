"""evaluate: score the step's candidate prompts by regenerating reasoning and answers with each on
the minibatch (official variant), or pass the gradient's top candidate through unevaluated (paper
variant). Every candidate from every source goes through here."""

from __future__ import annotations

from nodes.edit_limit import word_distance
from nodes.greater import Proposal, Rollout, evaluate_prompts
from nodes.session import scored, session, step_examples


def current_rollout(state: dict) -> Rollout:
    """The current prompt's rollout on this step's minibatch, as the reason node left it in the state."""
    cur = state["current"]
    return Rollout(tuple(cur["prompt"]), [tuple(r) for r in state["reasonings"]], [], cur["correct"], cur["nll"])


def proposal_of(state: dict) -> Proposal:
    prop = state["proposal"]
    return Proposal(
        prop["position"],
        prop["current_token"],
        tuple(prop["base_prompt"]),
        prop["candidates"],
        prop["gradients"],
        prop["ranked"],
        [tuple(m) for m in prop.get("more", [])],
    )


def gradient_candidates(state: dict, n: int) -> list[dict]:
    """The proposal's ``n`` best edits as whole prompts, most negative gradient first."""
    proposal = proposal_of(state)
    grad = dict(zip(proposal.candidates, proposal.gradients, strict=True))
    return [
        {"prompt": list(p), "source": "gradient", "token": token, "gradient": grad[token]}
        for p, token in zip(proposal.top_prompts(n), proposal.ranked, strict=False)
    ]


def evaluate(state: dict) -> dict:
    sess = session(state["settings"])
    st = sess.settings
    if st.variant == "paper":
        return {"evaluated": [_scored(sess, c, None, state["step"]) for c in gradient_candidates(state, 1)]}
    candidates, over = within_limit(
        sess, state, gradient_candidates(state, st.n_evaluate) + list(state.get("extra_candidates", []))
    )
    current = current_rollout(state)
    results = evaluate_prompts(
        sess.rt,
        sess.task.answer_format,
        st,
        step_examples(sess, state["step"]),
        [tuple(c["prompt"]) for c in candidates],
        current,
    )
    evaluated = [_scored(sess, c, rolled, state["step"]) for c, (_, rolled) in zip(candidates, results, strict=True)]
    rejected = dict(state.get("rejected") or {})
    rejected["over_limit"] = rejected.get("over_limit", 0) + over
    return {"evaluated": evaluated, "rejected": rejected}


def within_limit(sess, state: dict, candidates: list[dict]) -> tuple[list[dict], int]:
    """Distinct candidates within the step's word edit limit of the current prompt, and how many
    were over it."""
    limit = state.get("edit_limit")
    kept: dict[tuple, dict] = {}
    over = 0
    for c in candidates:
        key = tuple(c["prompt"])
        if key in kept:
            continue
        if limit is not None and word_distance(sess.rt.decode(c["prompt"]), state["prompt_text"]) > limit:
            over += 1
            continue
        kept[key] = c
    return list(kept.values()), over


def _scored(sess, candidate: dict, rolled: Rollout | None, step: int) -> dict:
    extra = {k: v for k, v in candidate.items() if k not in ("prompt", "text", "source", "step")}
    return scored(sess, candidate["prompt"], candidate["source"], rolled, step=step, **extra)
