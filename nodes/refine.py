"""refine: GPO's generation-based update. A chat model sees the retrieved trajectory with scores,
the current prompt, a few training examples showing where the prompt goes, and the edit limit, and
writes whole-prompt candidates. Replies are parsed from ``<prompt>`` blocks; malformed ones and
candidates over the limit (by measured word distance) are dropped and counted."""

from __future__ import annotations

import re

from nodes.chat_model import local_chat_model
from nodes.edit_limit import word_distance
from nodes.session import session, step_examples

PROMPT_BLOCK = re.compile(r"<prompt>(.*?)</prompt>", re.DOTALL | re.IGNORECASE)
MAX_PROMPT_WORDS = 120


def meta_prompt(current: str, retrieved: list[dict], examples: list, limit: int, n: int) -> str:
    lines = [
        "You improve an instruction that is added after each question given to a language model, "
        "so that the model reasons better and answers correctly.",
        "",
        "Earlier instructions and their accuracy on training questions (higher is better):",
    ]
    shown = [r for r in retrieved if r.get("accuracy") is not None][:8]
    lines += [f'- "{r["text"]}" (accuracy {r["accuracy"]:.2f})' for r in shown] or ["- (none recorded yet)"]
    lines += ["", f'Current instruction: "{current}"', "", "How the instruction is used:"]
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


def refine(state: dict, chat_model=None) -> dict:
    sess = session(state["settings"])
    st = sess.settings
    if not st.refine or st.variant == "paper":
        return {}
    chat = chat_model or local_chat_model(sess.rt, st.refine_max_new_tokens)
    limit = state.get("edit_limit", st.edit_max)
    current = state["prompt_text"]
    examples = step_examples(sess, state["step"])[:2]
    message = meta_prompt(current, state.get("retrieved", []), examples, limit, st.refine_candidates)
    try:
        reply = chat.invoke(message)
        text = reply.content if isinstance(reply.content, str) else str(reply.content)
    except Exception as exc:  # a remote model may fail; the step goes on without refinement
        text = ""
        error = f"{type(exc).__name__}: {exc}"[:300]
    else:
        error = ""
    prompts, malformed, over = parse_candidates(text, current, limit)
    prompts = prompts[: st.refine_candidates]
    rejected = dict(state.get("rejected") or {})
    rejected["malformed"] = rejected.get("malformed", 0) + malformed
    rejected["over_limit"] = rejected.get("over_limit", 0) + over
    new = [{"prompt": list(sess.rt.encode_prompt(p)), "source": "refinement"} for p in prompts]
    return {
        "extra_candidates": [*state.get("extra_candidates", []), *new],
        "rejected": rejected,
        "refine_reply": (error or text)[:2000],
    }
