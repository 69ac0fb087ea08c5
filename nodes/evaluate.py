"""evaluate: score the step's candidate prompts by regenerating reasoning and answers with each on
the minibatch (official variant), or pass the gradient's top candidate through unevaluated (paper
variant). Every candidate from every source goes through here."""

from __future__ import annotations

from nodes.greater import Rollout, evaluate_prompts
from nodes.session import scored, session, step_examples


def gradient_candidates(state: dict, n: int) -> list[dict]:
    """The proposal's ``n`` best tokens as whole prompts, most negative gradient first."""
    prop = state["proposal"]
    grad = dict(zip(prop["candidates"], prop["gradients"], strict=True))
    out = []
    for token in prop["ranked"][:n]:
        prompt = list(prop["base_prompt"])
        prompt[prop["position"]] = token
        out.append({"prompt": prompt, "source": "gradient", "token": token, "gradient": grad[token]})
    return out


def evaluate(state: dict) -> dict:
    sess = session(state["settings"])
    st = sess.settings
    if st.variant == "paper":
        return {"evaluated": [_scored(sess, c, None, state["step"]) for c in gradient_candidates(state, 1)]}
    candidates = gradient_candidates(state, st.n_evaluate) + list(state.get("extra_candidates", []))
    cur = state["current"]
    current = Rollout(tuple(cur["prompt"]), [tuple(r) for r in state["reasonings"]], [], cur["correct"], cur["nll"])
    results = evaluate_prompts(
        sess.rt,
        sess.task.answer_format,
        st,
        step_examples(sess, state["step"]),
        [tuple(c["prompt"]) for c in candidates],
        current,
    )
    evaluated = [_scored(sess, c, rolled, state["step"]) for c, (_, rolled) in zip(candidates, results, strict=True)]
    return {"evaluated": evaluated}


def _scored(sess, candidate: dict, rolled: Rollout | None, step: int) -> dict:
    extra = {k: v for k, v in candidate.items() if k not in ("prompt", "text", "source", "step")}
    return scored(sess, candidate["prompt"], candidate["source"], rolled, step=step, **extra)
