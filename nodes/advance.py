"""advance: apply the accepted update, move the edit position, and decide whether to go on."""

from __future__ import annotations

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.greater import next_position
from gradprompt.nodes.state import State
from gradprompt.nodes.word_moves import next_slot


def stop_reason(settings, step: int, stale: int, accuracy: float | None, spent: dict | None = None) -> str:
    """Why the run stops after ``step`` finished steps, or '' to go on."""
    spent = spent or {}
    if step >= settings.steps:
        return f"step budget of {settings.steps} reached"
    if settings.time_budget is not None and spent.get("seconds", 0.0) >= settings.time_budget:
        return f"time budget of {settings.time_budget:g} s spent ({spent['seconds']:.0f} s)"
    if settings.max_rollouts is not None and spent.get("rollouts", 0) >= settings.max_rollouts:
        return f"rollout budget of {settings.max_rollouts} spent ({spent['rollouts']} rollouts)"
    if settings.patience is not None and stale >= settings.patience:
        return f"no better prompt in {stale} steps"
    if settings.target_accuracy is not None and accuracy is not None and accuracy >= settings.target_accuracy:
        return f"pool accuracy {accuracy:.2f} reached the target"
    return ""


def advance(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    decision = state["decision"]
    prompt = tuple(decision["prompt"])
    step = state["step"] + 1
    on_pool = decision.get("examples") == state["current"].get("examples")
    accuracy = decision.get("accuracy") if on_pool else None
    reason = stop_reason(sess.settings, step, state.get("stale", 0), accuracy, state.get("spent"))
    return {
        "step": step,
        "prompt": list(prompt),
        "prompt_text": sess.rt.decode(prompt),
        "position": (
            next_slot(sess.rt.tokenizer, prompt, state["position"])
            if sess.settings.moves == "words"
            else next_position(sess.rt, prompt, _last_edited(state))
        ),
        "done": bool(reason),
        "stop_reason": reason,
        "timings": {},
    }


def _last_edited(state: dict) -> int:
    """The sweep continues after the last position this step's proposal covered."""
    more = (state.get("proposal") or {}).get("more") or []
    return more[-1][0] if more else state["position"]
