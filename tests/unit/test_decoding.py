"""The one-cache decode (reasoning, extractor, answer, drafts) equals plain greedy generation."""

from __future__ import annotations

import random

import pytest

from gradprompt.nodes.runtime import decoding
from gradprompt.nodes.runtime.decoding import DecodeJob, StepCosts, reason_and_answer
from gradprompt.nodes.runtime.scoring import prompt_nll
from gradprompt.nodes.tasks import builtin_task

QUESTIONS = [e.question for e in builtin_task("compare").examples[:6]]
EXTRACTOR = "\nTherefore, the final answer is"


def _reference(rt, contexts, extractor, max_new, max_answer):
    """Two separate generate calls per example, one example at a time."""
    reasonings = [rt.generate([c.ids], max_new)[0] for c in contexts]
    answers = [rt.generate([c.ids + r + extractor], max_answer)[0] for c, r in zip(contexts, reasonings, strict=True)]
    return reasonings, answers


def _drafts(kind, reasonings, rng):
    if kind == "none":
        return [()] * len(reasonings)
    if kind == "exact":
        return reasonings
    if kind == "one-token-off":
        return [(*r[:3], 7, *r[4:]) for r in reasonings]
    if kind == "dropped-token":
        return [r[:5] + r[6:] for r in reasonings]
    return [tuple(rng.randrange(20, 300) for _ in range(30)) for _ in reasonings]


@pytest.mark.parametrize("draft", ["none", "exact", "one-token-off", "dropped-token", "random"])
@pytest.mark.parametrize("max_new", [6, 20])
def test_decode_equals_plain_greedy(tiny_rt, draft, max_new, monkeypatch):
    rt = tiny_rt
    # guess lengths follow costs measured as decoding goes, which a busy machine skews: fix them to
    # a device where guessing pays, so whether the lookahead realigns does not depend on the load
    monkeypatch.setattr(decoding, "step_costs", lambda model: _FreeWidths())
    contexts = rt.contexts(QUESTIONS, rt.encode_prompt("Let's think step by step."))
    extractor = rt.layout.text_ids(EXTRACTOR)
    reasonings, answers = _reference(rt, contexts, extractor, max_new, 5)
    drafts = _drafts(draft, reasonings, random.Random(0))
    jobs = [DecodeJob(c.ids, c.prompt, extractor, d) for c, d in zip(contexts, drafts, strict=True)]
    out = rt.reason_and_answer(jobs, max_new, 5)
    assert [o.reasoning for o in out] == reasonings
    assert [o.answer for o in out] == answers
    nll = prompt_nll(rt, contexts)
    assert [o.prompt_nll for o in out] == pytest.approx(nll, rel=1e-4, abs=1e-5)
    if draft == "exact":
        assert all(o.draft_accepted == len(r) for o, r in zip(out, reasonings, strict=True))
    if draft in ("one-token-off", "dropped-token") and max_new == 20:
        # the lookahead realigns with the draft after the change, so most of it is still used
        assert sum(o.draft_accepted for o in out) > sum(len(r) for r in reasonings) // 2


def test_rows_that_stop_early_leave_the_batch(tiny_rt):
    """Rows whose reasoning hits a stop token at different steps switch to the extractor while
    the others keep reasoning, and every row still gets the answer plain greedy decoding gives."""
    rt = tiny_rt
    contexts = rt.contexts(QUESTIONS, rt.encode_prompt("Let's think step by step."))
    extractor = rt.layout.text_ids(EXTRACTOR)
    free, _ = _reference(rt, contexts, extractor, 20, 5)
    # declare as "stop" a token that greedy decoding emits at different steps in different rows
    firsts = {}
    for row in free:
        for i, t in enumerate(row):
            firsts.setdefault(t, []).append(i)
    stop = max(firsts, key=lambda t: (len(set(firsts[t])), len(firsts[t])))
    stops = frozenset({stop})

    def cut(seq):
        return tuple(seq[: seq.index(stop)]) if stop in seq else tuple(seq)

    reasonings = [cut(r) for r in free]
    assert len({len(r) for r in reasonings}) > 1, "the rows should stop at different steps"
    answers = [cut(rt.generate([c.ids + r + extractor], 5)[0]) for c, r in zip(contexts, reasonings, strict=True)]
    jobs = [DecodeJob(c.ids, c.prompt, extractor, d) for c, d in zip(contexts, free, strict=True)]
    for draft_jobs in (jobs, [DecodeJob(j.context, j.prompt, j.extractor) for j in jobs]):
        out = reason_and_answer(
            rt.model,
            draft_jobs,
            max_new_tokens=20,
            max_answer_tokens=5,
            stop_ids=stops,
            pad_id=rt.pad_id,
            device=rt.device,
        )
        assert [o.reasoning for o in out] == reasonings
        assert [o.answer for o in out] == answers


@pytest.mark.parametrize("max_new", [6, 20])
def test_gold_answer_log_probability_comes_with_an_unchanged_greedy_answer(tiny_rt, max_new):
    """The gold answer rides along as the answer's draft: the greedy answer stays exactly plain
    greedy (whether the gold agrees with it or not), and its log-probability equals a plain
    teacher-forced forward over context | reasoning | extractor | gold."""
    import torch

    rt = tiny_rt
    contexts = rt.contexts(QUESTIONS, rt.encode_prompt("Let's think step by step."))
    extractor = rt.layout.text_ids(EXTRACTOR)
    reasonings, answers = _reference(rt, contexts, extractor, max_new, 5)
    golds = [answers[0][:2] or (40,), rt.layout.text_ids(" Yes"), rt.layout.text_ids(" No"), *answers[3:]]
    golds = [g or (41, 42) for g in golds]
    jobs = [DecodeJob(c.ids, c.prompt, extractor, (), tuple(g)) for c, g in zip(contexts, golds, strict=True)]
    out = rt.reason_and_answer(jobs, max_new, 5)
    assert [o.reasoning for o in out] == reasonings
    assert [o.answer for o in out] == answers
    for c, r, g, o in zip(contexts, reasonings, golds, out, strict=True):
        ids = torch.tensor([c.ids + r + extractor + tuple(g)])
        with torch.no_grad():
            logp = torch.log_softmax(rt.model(input_ids=ids).logits[0].float(), -1)
        start = len(c.ids) + len(r) + len(extractor)
        want = sum(float(logp[start - 1 + j, t]) for j, t in enumerate(g))
        assert o.gold_logprob == pytest.approx(want, abs=1e-3)
        assert o.gold_logprob < 0


class _FreeWidths(StepCosts):
    """A device where a wide step costs what a narrow one does: every guess is verified."""

    def estimate(self, width, rows):
        return 1.0


class _DearWidths(StepCosts):
    """A device where every guessed token costs a whole step: guessing never pays."""

    def estimate(self, width, rows):
        return float(width)


@pytest.mark.parametrize("placement", ["after", "before", "system"])
@pytest.mark.parametrize("edit", [0, 2, -1])
def test_candidates_sharing_a_prefix_decode_as_plain_greedy(placement, edit):
    """Candidates of one example differ at one prompt position; the rows share everything before
    it (the question too, with the prompt after it). Reasoning, answers, prompt NLLs and gold
    log-probabilities equal decoding each row on its own, for every placement."""
    import torch
    from tiny_model import tiny_loaded

    from gradprompt.nodes.runtime.decoding import shared_prefix_lengths
    from gradprompt.nodes.runtime.model_runtime import ModelRuntime

    rt = ModelRuntime(tiny_loaded(), placement)
    base = rt.encode_prompt("Let's think step by step.")
    pos = edit % len(base)
    prompts = [base] + [[*base[:pos], t, *base[pos + 1 :]] for t in (40, 77)]
    extractor = rt.layout.text_ids(EXTRACTOR)
    gold = rt.layout.text_ids(" Yes")
    contexts = [c for p in prompts for c in rt.contexts(QUESTIONS[:3], p)]
    jobs = [DecodeJob(c.ids, c.prompt, extractor, (), tuple(gold)) for c in contexts]
    shared = shared_prefix_lengths(jobs)
    assert shared == [c.prompt[0] + pos for c in contexts], "rows share all before the edited position"
    if placement == "after":
        assert all(s >= c.question[1] for s, c in zip(shared, contexts, strict=True)), "the question is shared"
    together = rt.reason_and_answer(jobs, 12, 4)
    alone = [rt.reason_and_answer([j], 12, 4)[0] for j in jobs]
    assert [o.reasoning for o in together] == [o.reasoning for o in alone]
    assert [o.answer for o in together] == [o.answer for o in alone]
    reasonings, answers = _reference(rt, contexts, extractor, 12, 4)
    assert [o.reasoning for o in together] == reasonings
    assert [o.answer for o in together] == answers
    assert [o.prompt_nll for o in together] == pytest.approx(prompt_nll(rt, contexts), rel=1e-4, abs=1e-5)
    for o, c, r in zip(together, contexts, reasonings, strict=True):
        ids = torch.tensor([c.ids + r + extractor + tuple(gold)])
        with torch.no_grad():
            logp = torch.log_softmax(rt.model(input_ids=ids).logits[0].float(), -1)
        start = len(c.ids) + len(r) + len(extractor)
        assert o.gold_logprob == pytest.approx(sum(float(logp[start - 1 + k, t]) for k, t in enumerate(gold)), abs=1e-3)


def _assert_batch_equals_rows_alone(rt, rows, max_new: int) -> None:
    """Decoding the rows together gives what decoding each alone gives, output by output."""
    together = rt.reason_and_answer(rows, max_new, 4)
    alone = [rt.reason_and_answer([j], max_new, 4)[0] for j in rows]
    assert [o.reasoning for o in together] == [o.reasoning for o in alone]
    assert [o.answer for o in together] == [o.answer for o in alone]
    for a, b in zip(together, alone, strict=True):
        assert a.option_logprobs == pytest.approx(b.option_logprobs, abs=1e-4)
        assert a.prompt_nll == pytest.approx(b.prompt_nll, rel=1e-4, abs=1e-5)
        assert a.gold_logprob == pytest.approx(b.gold_logprob, abs=1e-4)


@pytest.mark.parametrize("placement", ["after", "before", "system"])
@pytest.mark.parametrize("max_new", [0, 10])
def test_candidates_of_other_lengths_share_the_prefix_and_decode_as_plain_greedy(placement, max_new):
    """Whole-word moves insert and delete tokens, so one example's candidates differ in length:
    they still share everything before the first position where their prompts differ, and every
    output equals decoding each row on its own."""
    from tiny_model import tiny_loaded

    from gradprompt.nodes.runtime.decoding import shared_prefix_lengths
    from gradprompt.nodes.runtime.model_runtime import ModelRuntime

    rt = ModelRuntime(tiny_loaded(), placement)
    base = rt.encode_prompt("Let's think step by step.")
    prompts = [base, [*base[:3], 41, *base[3:]], [*base[:3], *base[4:]], [*base[:4], 55, 66, *base[4:]], []]
    extractor = rt.layout.text_ids(EXTRACTOR)
    gold = rt.layout.text_ids(" Yes")
    options = (tuple(rt.layout.text_ids(" Yes")), tuple(rt.layout.text_ids(" No")))
    contexts = [c for p in prompts for c in rt.contexts(QUESTIONS[:3], p)]
    jobs = [DecodeJob(c.ids, c.prompt, extractor, (), tuple(gold), options) for c in contexts]
    shared = shared_prefix_lengths(jobs)
    # the empty prompt shares nothing of the prompt; the others would share its first 3 tokens
    assert shared == [c.prompt[0] for c in contexts]
    without_empty = jobs[: 4 * 3]
    assert shared_prefix_lengths(without_empty) == [c.prompt[0] + 3 for c in contexts[: 4 * 3]]
    for rows in (jobs, without_empty):
        _assert_batch_equals_rows_alone(rt, rows, max_new)


@pytest.mark.parametrize("placement", ["after", "before", "system"])
@pytest.mark.parametrize("max_new", [0, 8])
def test_the_header_every_question_shares_runs_once_and_decodes_as_plain_greedy(placement, max_new):
    """Rows of different questions have the chat's header in common: it is run once for the
    batch, beneath the per-question prefixes, for lone rows (one prompt, many questions) and for
    groups of candidates alike, and every output equals decoding the row on its own."""
    from tiny_model import tiny_loaded

    from gradprompt.nodes.runtime.decoding import common_prefix_length, shared_prefix_lengths
    from gradprompt.nodes.runtime.model_runtime import ModelRuntime

    rt = ModelRuntime(tiny_loaded(), placement)
    base = rt.encode_prompt("Let's think step by step.")
    extractor = rt.layout.text_ids(EXTRACTOR)
    gold = tuple(rt.layout.text_ids(" Yes"))
    options = (tuple(rt.layout.text_ids(" Yes")), tuple(rt.layout.text_ids(" No")))

    def lcp(rows):
        first, n = rows[0].context, min(len(j.context) for j in rows) - 1
        for j in rows[1:]:
            n = next((i for i in range(n) if j.context[i] != first[i]), n)
        return n

    lone = [DecodeJob(c.ids, c.prompt, extractor, (), gold, options) for c in rt.contexts(QUESTIONS, base)]
    grouped = lone[:2] + [
        DecodeJob(c.ids, c.prompt, extractor, (), gold, options)
        for c in rt.contexts(QUESTIONS[:2], [*base[:2], 41, *base[2:]])
    ]
    for rows in (lone, grouped, lone[:1]):
        shared = shared_prefix_lengths(rows)
        common = common_prefix_length(rows, shared)
        grouped_shares = [s for s in shared if s]
        if len(rows) == 1:
            assert common == 0
        else:
            assert common > 0, "the header is shared"
            assert common == min(lcp(rows), *grouped_shares) if grouped_shares else common == lcp(rows)
        _assert_batch_equals_rows_alone(rt, rows, max_new)


@pytest.mark.parametrize("draft", ["exact", "shifted", "corrupted", "random"])
@pytest.mark.parametrize("widths", [_FreeWidths, _DearWidths])
def test_ngram_drafting_gives_plain_greedy(tiny_rt, draft, widths):
    """Whatever the draft and whether guessing is cheap or dear on the device, the output is plain
    greedy decoding; with cheap guesses a shifted or corrupted draft is still mostly used (the
    n-gram lookup realigns), with dear ones nothing is guessed after the prefill."""
    rt = tiny_rt
    contexts = rt.contexts(QUESTIONS, rt.encode_prompt("Let's think step by step."))
    extractor = rt.layout.text_ids(EXTRACTOR)
    reasonings, answers = _reference(rt, contexts, extractor, 24, 5)
    rng = random.Random(1)
    if draft == "exact":
        drafts = reasonings
    elif draft == "shifted":  # two tokens inserted near the start: the rest is the same but offset
        drafts = [(*r[:2], 9, 9, *r[2:]) for r in reasonings]
    elif draft == "corrupted":  # every seventh token wrong
        drafts = [tuple(7 if i % 7 == 3 else t for i, t in enumerate(r)) for r in reasonings]
    else:
        drafts = [tuple(rng.randrange(20, 300) for _ in range(30)) for _ in reasonings]
    jobs = [DecodeJob(c.ids, c.prompt, extractor, d) for c, d in zip(contexts, drafts, strict=True)]
    out = reason_and_answer(
        rt.model,
        jobs,
        max_new_tokens=24,
        max_answer_tokens=5,
        stop_ids=rt.stop_ids,
        pad_id=rt.pad_id,
        device=rt.device,
        costs=widths(),
    )
    assert [o.reasoning for o in out] == reasonings
    assert [o.answer for o in out] == answers
    accepted = sum(o.draft_accepted for o in out)
    total = sum(len(r) for r in reasonings)
    if draft == "exact":
        assert accepted == total
    if draft in ("shifted", "corrupted") and widths is _FreeWidths:
        assert accepted > total // 2
    if draft in ("shifted", "corrupted") and widths is _DearWidths:
        # only what the prefill confirmed before the first difference
        assert accepted < total // 2


def test_guess_length_follows_measured_costs():
    """A guess is taken when the measured cost of the wider step is covered by the tokens it is
    expected to gain, and not otherwise."""
    from gradprompt.nodes.runtime.decoding import _Row, choose_guess_length

    rows = [_Row(DecodeJob((1, 2, 3), (1, 2), (5,), tuple(range(10, 40)))) for _ in range(4)]
    for r in rows:
        r.feed, r.guess, r.tried, r.held = [11], list(range(12, 20)), 40, 38  # reliable drafts
    cheap = StepCosts()
    for w in (1, 9):
        cheap.record(w, 4, 0.04)
    assert choose_guess_length(rows, cheap, 8) == 8
    dear = StepCosts()
    dear.record(1, 4, 0.04)
    dear.record(9, 4, 0.04 * 12)
    assert choose_guess_length(rows, dear, 8) == 0
    for r in rows:
        r.tried, r.held = 40, 2  # drafts that keep failing: not worth even a cheap step's padding
    slightly = StepCosts()
    slightly.record(1, 4, 0.04)
    slightly.record(9, 4, 0.05)
    assert choose_guess_length(rows, slightly, 8) == 0
