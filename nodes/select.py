"""select: the update this step proposes: the lowest-scoring evaluated candidate (official) or the
gradient argmax (paper). A person may still overrule it before it is applied."""

from __future__ import annotations


def select(state: dict) -> dict:
    evaluated = state["evaluated"]
    if not evaluated:  # every candidate was over the edit limit: keep the current prompt
        return {"decision": state["current"]}
    if all(c.get("score") is None for c in evaluated):
        return {"decision": evaluated[0]}
    best = min(evaluated, key=lambda c: c["score"])
    return {"decision": best}
