"""The choice readout: the answer is the allowed option the model finds most likely after the
extractor, checked against a plain forward per option on the tiny model."""

from __future__ import annotations

import pytest
import torch

from gradprompt.nodes.greater import decode_jobs, rollout
from gradprompt.nodes.runtime.decoding import DecodeJob
from gradprompt.nodes.tasks import Example, builtin_task, detect_answer_format
from gradprompt.nodes.tasks.readout import Readout, ReadoutMode, readout_of

PROMPT = "Let's think step by step."


def _brute_force(rt, context, reasoning, extractor, option) -> float:
    """log p(option | context, reasoning, extractor) from one plain forward over the whole row."""
    ids = torch.tensor([tuple(context) + tuple(reasoning) + tuple(extractor) + tuple(option)])
    with torch.no_grad():
        logp = torch.log_softmax(rt.model(input_ids=ids).logits[0].float(), -1)
    start = len(context) + len(reasoning) + len(extractor)
    return sum(float(logp[start - 1 + j, t]) for j, t in enumerate(option))


def _label_task(labels):
    questions = [e.question for e in builtin_task("compare").examples[:6]]
    return [Example(q, labels[i % len(labels)]) for i, q in enumerate(questions)]


@pytest.mark.parametrize("max_new", [0, 5, 12])
def test_choice_is_the_likeliest_option_and_equals_a_forward_per_option(tiny_rt, max_new):
    """Options of one and of several tokens: each one's summed log-probability equals a plain
    forward over context | reasoning | extractor | option, the answer is the best of them, and the
    gold answer's log-probability is its option's."""
    rt = tiny_rt
    examples = _label_task(["Yes", "Uncertain premises", "number numbers"])
    fmt = detect_answer_format([e.question for e in examples], [e.answer for e in examples] * 3)
    readout = readout_of(fmt, "choice", max_new)
    prompt = tuple(rt.encode_prompt(PROMPT))
    jobs = decode_jobs(rt, readout, [(prompt, e, ()) for e in examples])
    assert any(len(o) > 1 for o in jobs[0].options) and any(len(o) == 1 for o in jobs[0].options)
    out = rt.reason_and_answer(jobs, max_new, fmt.max_answer_tokens)
    for job, ex, got in zip(jobs, examples, out, strict=True):
        want = [_brute_force(rt, job.context, got.reasoning, job.extractor, o) for o in job.options]
        assert got.option_logprobs == pytest.approx(want, abs=1e-3)
        assert got.answer == job.options[max(range(len(want)), key=want.__getitem__)]
        gold = rt.extractor_ids(readout.target(ex.answer))
        assert got.gold_logprob == pytest.approx(want[job.options.index(gold)], abs=1e-3)
        assert len(got.reasoning) <= max_new
    # the reasoning is the plain greedy one: choosing changes only how the answer is read
    if max_new:
        plain = rt.generate([j.context for j in jobs], max_new)
        assert [o.reasoning for o in out] == plain


def test_letters_are_only_those_the_question_offers(tiny_rt):
    """Whatever the model prefers after the extractor, the answer is one of the question's letters."""
    rt = tiny_rt
    questions = ["Pick one. Options: (A) apple (B) car", "Which? (A) red (B) blue (C) green", "Options: (A) 3 (B) 5"]
    examples = [Example(q, "(A)") for q in questions]
    fmt = detect_answer_format(questions, ["(A)", "(B)", "(A)"])
    readout = readout_of(fmt, "choice", 6)
    prompt = tuple(rt.encode_prompt(PROMPT))
    jobs = decode_jobs(rt, readout, [(prompt, e, ()) for e in examples])
    out = rt.reason_and_answer(jobs, 6, fmt.max_answer_tokens)
    free_choices = []
    for ex, job, got in zip(examples, jobs, out, strict=True):
        offered = [letter for letter, _ in readout.options(ex.question)]
        assert len(job.options) == len(offered) == ex.question.count("(")
        assert rt.decode(got.answer) in offered
        want = [_brute_force(rt, job.context, got.reasoning, job.extractor, o) for o in job.options]
        assert got.option_logprobs == pytest.approx(want, abs=1e-3)
        row = torch.tensor([tuple(job.context) + tuple(got.reasoning) + tuple(job.extractor)])
        with torch.no_grad():
            free_choices.append(rt.decode([int(rt.model(input_ids=row).logits[0, -1].argmax())]).strip())
    # the likeliest token after the extractor is, on this random model, not an offered letter: the
    # answers above are letters because the readout chooses among the options, not by chance
    assert any(c not in ("A", "B", "C") for c in free_choices), free_choices
    rolled = rollout(rt, readout, examples, [prompt], 6)[0]
    assert all(a in ("A", "B", "C") for a in rolled.answers)


def test_the_option_listed_first_gains_nothing_from_its_position(tiny_rt):
    """The choice extractor names no options, so listing the labels in another order changes
    neither the extractor nor any prediction; the generate extractor does name them, in order."""
    rt = tiny_rt
    examples = _label_task(["Yes", "No"])
    prompt = tuple(rt.encode_prompt(PROMPT))
    forward = detect_answer_format([e.question for e in examples], ["Yes", "No"] * 3)
    backward = type(forward)(forward.kind, tuple(reversed(forward.labels)), forward.max_answer_tokens)
    a, b = (Readout(f, ReadoutMode.CHOICE) for f in (forward, backward))
    assert a.extractor("q") == b.extractor("q") and "Yes" not in a.extractor("q")
    ra, rb = (rollout(rt, r, examples, [prompt], 6)[0] for r in (a, b))
    assert ra.answers == rb.answers and ra.gold_logprobs == pytest.approx(rb.gold_logprobs, abs=1e-5)
    listed = [Readout(f, ReadoutMode.GENERATE).extractor("q") for f in (forward, backward)]
    assert listed[0] != listed[1] and "Yes or No" in listed[0]


def test_open_answers_are_generated(tiny_rt):
    """Integers and free text keep generation: no options, the extractor names a number."""
    task = builtin_task("arithmetic")
    readout = readout_of(task.answer_format, "choice", 8)
    assert not readout.chooses and readout.options(task.examples[0].question) == ()
    jobs = decode_jobs(tiny_rt, readout, [((), task.examples[0], ())])
    assert jobs[0].options == ()


def test_a_choice_row_beside_generating_rows_leaves_them_unchanged(tiny_rt):
    """Rows that choose and rows that generate share one decode; the generating rows get exactly
    what they get alone."""
    rt = tiny_rt
    prompt = tuple(rt.encode_prompt(PROMPT))
    examples = _label_task(["Yes", "Uncertain premises"])
    fmt = detect_answer_format([e.question for e in examples], ["Yes", "Uncertain premises"] * 3)
    chooser = decode_jobs(rt, readout_of(fmt, "choice", 8), [(prompt, e, ()) for e in examples])
    generator = [DecodeJob(j.context, j.prompt, j.extractor) for j in chooser]
    alone = rt.reason_and_answer(generator, 8, 5)
    mixed = rt.reason_and_answer([x for pair in zip(chooser, generator, strict=True) for x in pair], 8, 5)
    assert [m.answer for m in mixed[1::2]] == [a.answer for a in alone]
    assert all(m.answer in j.options for m, j in zip(mixed[::2], chooser, strict=True))
