"""refine: GPO's generation-based update. A chat model sees the retrieved trajectory with scores,
the current prompt, a few training examples showing where the prompt goes, and the edit limit, and
writes whole-prompt candidates. Replies are parsed from ``<prompt>`` blocks; malformed ones and
candidates over the limit (by measured word distance) are dropped and counted.

Refinement is off unless a chat model is passed in (or ``refine`` is set): the bundled 135M model
writes no usable prompt, and asking it cost a third of every step. When it is on and the chat model
offers nothing usable for ``refine_patience`` steps in a row, the run stops asking and says so."""

from __future__ import annotations

import re

from langgraph.runtime import Runtime

from gradprompt.nodes.chat_model import local_chat_model
from gradprompt.nodes.context import Context
from gradprompt.nodes.edit_limit import word_distance
from gradprompt.nodes.proposers import Candidate, StepView
from gradprompt.nodes.session import gradient_examples
from gradprompt.nodes.state import State
from gradprompt.nodes.step import offer

PROMPT_BLOCK = re.compile(r"<prompt>(.*?)</prompt>", re.DOTALL | re.IGNORECASE)
MAX_PROMPT_WORDS = 120


def _measured(r: dict) -> str | None:
    """How well a prompt did, in words: dev accuracy when it has one for this run's splits, else
    its training accuracy, with the number of examples when known."""
    if r.get("dev_accuracy") is not None:
        return f"dev accuracy {r['dev_accuracy']:.2f}"
    if r.get("accuracy") is not None:
        n = r.get("examples")
        return f"accuracy {r['accuracy']:.2f}" + (f" on {n} examples" if n else "")
    return None


def meta_prompt(current: str, retrieved: list[dict], examples: list, limit: int, n: int, accuracy=None) -> str:
    lines = [
        "You improve an instruction that is added after each question given to a language model, "
        "so that the model reasons better and answers correctly.",
        "",
        "Earlier instructions and how they scored on training questions (higher is better):",
    ]
    shown = [(r, _measured(r)) for r in retrieved if not r.get("current")]
    shown = [(r, m) for r, m in shown if m is not None][:8]
    lines += [f'- "{r["text"]}" ({m})' for r, m in shown] or ["- (none recorded yet)"]
    now = f" ({_measured({'accuracy': accuracy})})" if accuracy is not None else ""
    lines += ["", f'Current instruction: "{current}"{now}', "", "How the instruction is used:"]
    for ex in examples:
        lines += [f"Question: {ex.question}", f"Instruction: {current}", f"Correct answer: {ex.answer}", ""]
    lines += [
        f"Write {n} new instructions likely to score higher. Each may differ from the current instruction by at "
        f"most {limit} words. Put each one inside <prompt> and </prompt> and write nothing else.",
    ]
    return "\n".join(lines)


def parse_candidates(reply: str, current: str, limit: int) -> tuple[list[str], int, int]:
    """Distinct usable prompts from a reply, plus counts of malformed and over-limit ones."""
    blocks = [b.strip().strip('"').strip() for b in PROMPT_BLOCK.findall(reply)]
    malformed = 0 if blocks else 1
    kept, over = [], 0
    for text in blocks:
        if not text or len(text.split()) > MAX_PROMPT_WORDS or "<" in text or text == current:
            malformed += 1
        elif word_distance(text, current) > limit:
            over += 1
        elif text not in kept:
            kept.append(text)
    return kept, malformed, over


def refining(settings, chat_model) -> bool:
    """Whether the run refines: as set, or (unset) when a chat model was passed in."""
    return settings.variant != "paper" and (settings.refine if settings.refine is not None else chat_model is not None)


class Refinement:
    """Whole prompts a chat model writes from the retrieved trajectory."""

    source = "refinement"

    def __init__(self, chat_model):
        self.chat_model = chat_model

    def propose(self, view: StepView) -> list[Candidate]:
        texts = ask_chat_model(view, self.chat_model)
        return [Candidate(tuple(view.sess.rt.encode_prompt(t)), self.source, "rewritten") for t in texts]


def ask_chat_model(view: StepView, chat) -> list[str]:
    """The chat model's usable prompts for this step; what it cost in dropped replies, its reply
    and any error go to ``view.notes``."""
    sess, state = view.sess, view.state
    st = sess.settings
    limit = state.get("edit_limit", st.edit_max)
    current = state["prompt_text"]
    examples = gradient_examples(sess, state["step"])[:2]
    accuracy = (state.get("current") or {}).get("accuracy")
    message = meta_prompt(current, state.get("retrieved", []), examples, limit, st.refine_candidates, accuracy)
    try:
        reply = chat.invoke(message)
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
    except Exception as exc:  # a remote model may fail; the step goes on without refinement
        text = ""
        error = f"{type(exc).__name__}: {exc}"[:300]
    else:
        error = ""
    prompts, malformed, over = parse_candidates(text, current, limit)
    rejected = dict(state.get("rejected") or {})
    rejected["malformed"] = rejected.get("malformed", 0) + malformed
    rejected["over_limit"] = rejected.get("over_limit", 0) + over
    view.notes.update(rejected=rejected, refine_reply=text[:2000], refine_error=error)
    return prompts[: st.refine_candidates]


def refine(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    st = sess.settings
    chat_model = runtime.context.chat_model
    if not refining(st, chat_model):
        return {}
    misses = state.get("refine_misses", 0)
    if misses >= st.refine_patience:
        return {"refine_error": f"stopped asking: no usable prompt in {misses} steps in a row"}
    chat = chat_model or local_chat_model(sess.rt, st.refine_max_new_tokens)
    new, notes = offer(sess, state, [Refinement(chat)])
    return {
        "offered": [*state.get("offered", []), *new],
        "refine_misses": 0 if new else misses + 1,
        **notes,
    }
