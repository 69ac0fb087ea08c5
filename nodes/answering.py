"""Answering new questions with a prompt, read exactly the way a run scores it.

A run's number means something only under its reading: the chat layout that places the prompt,
the extractor after the reasoning, the choice among the allowed answers. This module is that
reading for questions with no gold answer (or with one, to check it), built from the same decode
jobs as the run's rollouts, so an answer here is the answer the run measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gradprompt.nodes.greater import PromptIds, decode_job
from gradprompt.nodes.runtime.model_runtime import ModelRuntime
from gradprompt.nodes.tasks.readout import Readout


@dataclass(frozen=True)
class Answered:
    """One question's answer. ``answer`` is the normalised answer (the chosen option for a closed
    set, the parsed text otherwise; None when nothing could be read); ``text`` is what the model's
    answer tokens say; ``probabilities`` is every allowed answer's probability, renormalised over
    the set (closed sets only)."""

    answer: str | None
    text: str
    reasoning: str
    probabilities: dict[str, float] | None
    correct: bool | None


def renormalised(logprobs: Sequence[float]) -> list[float]:
    """Probabilities of the allowed answers given that the answer is one of them."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    return [w / total for w in weights]


def answer_questions(
    rt: ModelRuntime,
    readout: Readout,
    prompt: PromptIds,
    questions: Sequence[str],
    max_new_tokens: int,
    golds: Sequence[str | None] | None = None,
    label: str | None = None,
) -> list[Answered]:
    """Reason (up to ``max_new_tokens``; none for direct answers) and answer every question with
    ``prompt``, batched; a gold answer, where given, is judged the way the run judges it."""
    golds = list(golds) if golds is not None else [None] * len(questions)
    jobs = [decode_job(rt, readout, tuple(prompt), q, g) for q, g in zip(questions, golds, strict=True)]
    decoded = rt.reason_and_answer(jobs, max_new_tokens, readout.fmt.max_answer_tokens, label=label)
    out = []
    for question, gold, job, d in zip(questions, golds, jobs, decoded, strict=True):
        text = rt.tokenizer.decode(d.answer, skip_special_tokens=True)
        options = readout.options(question)
        probabilities = None
        if options and d.option_logprobs:
            names = [name for name, _ in options]
            probabilities = dict(zip(names, renormalised(d.option_logprobs), strict=True))
            answer = names[job.options.index(tuple(d.answer))]
        else:
            answer = readout.fmt.parse(text, question)
        correct = None if gold is None else readout.is_correct(text, gold, question)
        out.append(Answered(answer, text, rt.decode(d.reasoning), probabilities, correct))
    return out
