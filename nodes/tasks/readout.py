"""How an answer is read from the model: the one definition every path that scores a prompt uses
(rollouts and their cache, racing, the final choice, warm starts, ``evaluate``, the gradient's loss,
the notebooks and the benchmarks).

For a closed answer set (letters the question offers, yes/no, true/false, valid/invalid, a small
label set) the default readout is a *choice*: after the reasoning and the extractor, the answer is
the allowed option whose tokens the model finds most likely, the way evaluation harnesses score
multiple choice. A small model often reasons its way to the right label and then fails to restate
it (it copies the option listed first, writes ``:`` or a number); parsing what it writes measures
that failure, not what it knows. Integers and free text are generated and parsed.

The extractor in choice mode names no options: listing them lets the one named first (or last)
win by its position (measured in ``benchmarks/readout.py``). Without reasoning (direct answers)
the extractor follows the assistant header at once, so it drops the "Therefore".
The gold answer's log-probability (the search's tie-break) and the gradient's loss are taken after
the same extractor, so the search optimizes what is measured.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from enum import StrEnum

from gradprompt.nodes.tasks.answer_types import AnswerFormat, AnswerKind, question_letters

CLOSED_KINDS = frozenset(
    {AnswerKind.LETTER, AnswerKind.YES_NO, AnswerKind.TRUE_FALSE, AnswerKind.VALID_INVALID, AnswerKind.LABEL}
)


class ReadoutMode(StrEnum):
    CHOICE = "choice"
    GENERATE = "generate"


@dataclass(frozen=True)
class Readout:
    """An answer format plus how its answers are read: chosen from the closed set or generated,
    after reasoning or directly."""

    fmt: AnswerFormat
    mode: ReadoutMode = ReadoutMode.CHOICE
    reasoning: bool = True
    metric: str | None = None  # import path of a user's metric that judges the text read (nodes.tasks.metric)

    @property
    def chooses(self) -> bool:
        """Whether answers are chosen from a closed set (else generated and parsed)."""
        return self.mode is ReadoutMode.CHOICE and self.fmt.kind in CLOSED_KINDS

    def extractor(self, question: str) -> str:
        """Text placed after the reasoning (or right after the question and prompt) so that the
        next tokens are the answer."""
        if not self.chooses:
            text = self.fmt.extractor(question)
            if self.reasoning:
                return text
            text = text.removeprefix("\nTherefore, ")
            return text[:1].upper() + text[1:]
        lead = "\nTherefore, the" if self.reasoning else "The"
        if self.fmt.kind is AnswerKind.LETTER:
            return f"{lead} answer is ("
        return f"{lead} final answer is" if self.reasoning else f"{lead} answer is"

    def options(self, question: str) -> tuple[tuple[str, str], ...]:
        """The allowed answers of ``question`` as (normalised answer, text after the extractor); empty
        when the answer is generated. Letters are the ones the question offers, in its order."""
        if not self.chooses:
            return ()
        if self.fmt.kind is AnswerKind.LETTER:
            letters = question_letters(question) or tuple(string.ascii_uppercase)
            return tuple((letter, letter) for letter in letters)
        return tuple((self.fmt.normalize_gold(label), " " + label) for label in self.fmt.labels)

    def target(self, gold: str) -> str:
        """The gold answer as the text right after the extractor (what the loss is taken on)."""
        return self.fmt.target(gold)

    def is_correct(self, answer: str, gold: str, question: str = "") -> bool:
        """Whether the text read as the answer (a chosen option's text, or what was generated)
        is the gold answer, by the user's metric when the run has one."""
        if self.metric is not None:
            from gradprompt.nodes.tasks.metric import judged, load_metric

            return judged(load_metric(self.metric), answer, gold)
        return self.fmt.is_correct(answer, gold, question)

    def to_json(self) -> dict:
        out = {"format": self.fmt.to_json(), "mode": self.mode.value, "reasoning": self.reasoning}
        if self.metric is not None:
            out["metric"] = self.metric
        return out


def readout_of(
    fmt: AnswerFormat, mode: str | ReadoutMode = ReadoutMode.CHOICE, max_new_tokens: int = 1, metric: str | None = None
) -> Readout:
    """The readout a run's settings ask for: ``max_new_tokens`` 0 means direct answers."""
    return Readout(fmt, ReadoutMode(mode), max_new_tokens > 0, metric)
