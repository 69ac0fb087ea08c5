"""Where the optimized prompt sits in a chat, as token ids, for any model's chat template.

The chat is rendered once per question with a marker where the prompt goes; the text before and
after the marker is tokenized on its own and the prompt's token ids are spliced in between. So the
prompt is never decoded and re-encoded between steps, and the spans of question and prompt come
from token offsets rather than from hand-written per-family strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from gradprompt.errors import GradpromptError

MARKER = "[[GRADPROMPT-PROMPT]]"


class Placement(StrEnum):
    """Where the optimized prompt goes in the chat."""

    AFTER = "after"  # user turn: question, newline, prompt (the GReaTer setting)
    BEFORE = "before"  # user turn: prompt, newline, question
    SYSTEM = "system"  # the system message is the prompt; the user turn is the question


@dataclass(frozen=True)
class Encoded:
    """One question with one prompt, ready to generate from: ids end at the assistant header."""

    ids: tuple[int, ...]
    prompt: tuple[int, int]  # [start, end) of the prompt tokens in ids
    question: tuple[int, int]  # [start, end) of the question tokens in ids


@dataclass(frozen=True)
class _Parts:
    before: tuple[int, ...]
    after: tuple[int, ...]
    question: tuple[int, int]  # token span inside the segment that holds the question
    question_in_before: bool


def _token_span(offsets: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Tokens whose characters overlap [start, end)."""
    idx = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    if not idx:
        return (0, 0)
    return (idx[0], idx[-1] + 1)


class ChatLayout:
    """Builds chat token sequences around a prompt held as token ids."""

    def __init__(self, tokenizer, placement: Placement | str = Placement.AFTER, separator: str = "\n"):
        self.tokenizer = tokenizer
        self.placement = Placement(placement)
        self.separator = separator
        self._parts = lru_cache(maxsize=65536)(self._split)

    def _messages(self, question: str) -> list[dict[str, str]]:
        if self.placement is Placement.AFTER:
            return [{"role": "user", "content": f"{question}{self.separator}{MARKER}"}]
        if self.placement is Placement.BEFORE:
            return [{"role": "user", "content": f"{MARKER}{self.separator}{question}"}]
        return [{"role": "system", "content": MARKER}, {"role": "user", "content": question}]

    def _split(self, question: str) -> _Parts:
        try:
            text = self.tokenizer.apply_chat_template(
                self._messages(question), tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # templates raise their own errors, e.g. "no system role"
            raise GradpromptError(
                f"the model's chat template cannot place the prompt as {self.placement.value!r} "
                f"({exc}); choose another placement (after, before, system)"
            ) from None
        if text.count(MARKER) != 1:
            raise GradpromptError(
                f"the chat template does not keep the prompt text verbatim for placement "
                f"{self.placement.value!r}; choose another placement"
            )
        pre, post = text.split(MARKER)
        if self.placement is Placement.AFTER:
            q_end = len(pre) - len(self.separator)
            q_start, in_before, seg = q_end - len(question), True, pre
        else:
            q_start = post.rfind(question)
            q_end, in_before, seg = q_start + len(question), False, post
        if q_start < 0 or seg[q_start:q_end] != question:
            raise GradpromptError(
                "the chat template changed the question text (e.g. trimmed it); strip leading and "
                "trailing whitespace from questions or choose another placement"
            )
        enc_pre = self.tokenizer(pre, add_special_tokens=False, return_offsets_mapping=True)
        enc_post = self.tokenizer(post, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc_pre["offset_mapping"] if in_before else enc_post["offset_mapping"]
        return _Parts(
            before=tuple(enc_pre["input_ids"]),
            after=tuple(enc_post["input_ids"]),
            question=_token_span(offsets, q_start, q_end),
            question_in_before=in_before,
        )

    def encode(self, question: str, prompt_ids: list[int] | tuple[int, ...]) -> Encoded:
        """The chat for ``question`` with ``prompt_ids`` spliced in, ending where the answer begins."""
        parts = self._parts(question)
        prompt = tuple(prompt_ids)
        start = len(parts.before)
        shift = 0 if parts.question_in_before else start + len(prompt)
        return Encoded(
            ids=parts.before + prompt + parts.after,
            prompt=(start, start + len(prompt)),
            question=(parts.question[0] + shift, parts.question[1] + shift),
        )

    def text_ids(self, text: str) -> tuple[int, ...]:
        """Ids of a plain piece of text (prompt, extractor, answer), no special tokens added."""
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])
