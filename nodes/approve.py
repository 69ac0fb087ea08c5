"""approve: a person decides on the step's update (on with ``human_approval``).

The node stops the graph with LangGraph's ``interrupt()`` and a payload a person can decide from;
the run is checkpointed there and waits, in this process or any later one, for
``Command(resume={"action": "approve" | "reject" | "edit", "prompt": TEXT})``. It holds no model
work before the interrupt, so resuming re-runs nothing expensive; an edited prompt is scored on
the whole selection pool (paired with the current prompt) before it is accepted.
"""

from __future__ import annotations

import difflib

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from gradprompt.errors import GradpromptError
from gradprompt.nodes.context import Context
from gradprompt.nodes.decisions import discordant
from gradprompt.nodes.session import scored
from gradprompt.nodes.state import State
from gradprompt.nodes.step import pool_rollout

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
        (c for c in state["evaluated"] if c["prompt"] != decision["prompt"] and c.get("accuracy") is not None),
        key=lambda c: (-c.get("examples", 0), -c["accuracy"], -c.get("gold_logprob", 0.0)),
    )[:3]
    return {
        "step": state["step"],
        "current": _brief(current, state["prompt_text"]),
        "proposed": {**_brief(decision, decision["text"]), "source": decision.get("source")},
        "reason": decision.get("reason", ""),
        "diff": word_diff(state["prompt_text"], decision["text"]),
        "alternatives": [{**_brief(c, c["text"]), "source": c["source"]} for c in alternatives],
        "edit_limit": state.get("edit_limit"),
        "actions": list(ACTIONS),
    }


def _brief(item: dict, text: str) -> dict:
    """What a person needs of a prompt's results: accuracy on how many pool examples."""
    return {
        "text": text,
        "accuracy": item.get("accuracy"),
        "examples": item.get("examples"),
        "gold_logprob": item.get("gold_logprob"),
        "score": item.get("score"),
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


def approve(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    if not sess.settings.human_approval:
        return {}
    action, text = parse_answer(interrupt(approval_request(state)))
    decision = dict(state["decision"])
    if action == "approve":
        return {"decision": {**decision, "by": "human"}}
    if action == "reject":
        return {"decision": {**state["current"], "by": "human"}}
    ids = tuple(sess.rt.encode_prompt(text.strip()))
    current = pool_rollout(sess, state["prompt"])
    rolled = pool_rollout(sess, ids)
    only_new, only_old = discordant(rolled.correct, current.correct)
    edited = scored(
        sess,
        ids,
        "human",
        rolled,
        step=state["step"],
        by="human",
        finished=True,
        stopped="",
        only_new_right=only_new,
        only_current_right=only_old,
    )
    return {"decision": edited, "evaluated": [*state["evaluated"], edited]}
