"""approve: a person decides on the step's update (on with ``human_approval``).

The node stops the graph with LangGraph's ``interrupt()`` and a payload a person can decide from;
the run is checkpointed there and waits, in this process or any later one, for
``Command(resume={"action": "approve" | "reject" | "edit", "prompt": TEXT})``. It holds no model
work before the interrupt, so resuming re-runs nothing expensive; an edited prompt is scored on
the step's minibatch before it is accepted.
"""

from __future__ import annotations

import difflib

from langgraph.types import interrupt

from nodes.errors import GradpromptError
from nodes.evaluate import current_rollout
from nodes.greater import evaluate_prompts
from nodes.session import scored, session, step_examples

ACTIONS = ("approve", "reject", "edit")


def word_diff(old: str, new: str) -> list[dict]:
    """Word-level changes from ``old`` to ``new`` as (op, old words, new words)."""
    a, b = old.split(), new.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        out.append({"op": op, "old": " ".join(a[i1:i2]), "new": " ".join(b[j1:j2])})
    return out


def approval_request(state: dict) -> dict:
    """What a person sees: the proposed update, its diff, the scores and the alternatives."""
    decision, current = state["decision"], state["current"]
    alternatives = sorted(
        (c for c in state["evaluated"] if c["prompt"] != decision["prompt"] and c.get("score") is not None),
        key=lambda c: c["score"],
    )[:3]
    return {
        "step": state["step"],
        "current": {"text": state["prompt_text"], "accuracy": current.get("accuracy"), "score": current.get("score")},
        "proposed": {
            "text": decision["text"],
            "source": decision.get("source"),
            "accuracy": decision.get("accuracy"),
            "score": decision.get("score"),
        },
        "diff": word_diff(state["prompt_text"], decision["text"]),
        "alternatives": [
            {"text": c["text"], "source": c["source"], "accuracy": c.get("accuracy"), "score": c.get("score")}
            for c in alternatives
        ],
        "edit_limit": state.get("edit_limit"),
        "actions": list(ACTIONS),
    }


def parse_answer(answer) -> tuple[str, str | None]:
    if isinstance(answer, str):
        answer = {"action": answer}
    if not isinstance(answer, dict) or answer.get("action") not in ACTIONS:
        raise GradpromptError(f"an approval answer needs an action, one of {', '.join(ACTIONS)}; got {answer!r}")
    text = answer.get("prompt")
    if answer["action"] == "edit" and not (isinstance(text, str) and text.strip()):
        raise GradpromptError("the edit action needs the new prompt text (--prompt TEXT)")
    return answer["action"], text


def approve(state: dict) -> dict:
    sess = session(state["settings"])
    if not sess.settings.human_approval:
        return {}
    action, text = parse_answer(interrupt(approval_request(state)))
    decision = dict(state["decision"])
    if action == "approve":
        return {"decision": {**decision, "by": "human"}}
    if action == "reject":
        return {"decision": {**state["current"], "by": "human"}}
    ids = tuple(sess.rt.encode_prompt(text.strip()))
    current = current_rollout(state)
    ((_, rolled),) = evaluate_prompts(
        sess.rt, sess.task.answer_format, sess.settings, step_examples(sess, state["step"]), [ids], current
    )
    edited = scored(sess, ids, "human", rolled, step=state["step"], by="human")
    return {"decision": edited, "evaluated": [*state["evaluated"], edited]}
