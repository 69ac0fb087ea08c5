"""Whole-word moves on the tiny model: every candidate is made of whole words, insert and delete
change the prompt by exactly one word, the words come only from the top-k rule; phrase edits give
the expected strings."""

from __future__ import annotations

import random

import pytest
import torch

from gradprompt.nodes.edit_limit import word_distance
from gradprompt.nodes.greater import forced_rows, next_position, rollout
from gradprompt.nodes.phrase_edits import all_edits, phrases, sample_edits
from gradprompt.nodes.readability import is_known, readability
from gradprompt.nodes.runtime import word_units
from gradprompt.nodes.runtime.candidates import example_groups, propose_candidates
from gradprompt.nodes.settings import RunSettings, StepSettings
from gradprompt.nodes.tasks import builtin_task
from gradprompt.nodes.tasks.readout import readout_of
from gradprompt.nodes.word_moves import next_slot, propose_word_moves

PROMPT = "Solve the problem, explain your reasoning."


def _words(rt, ids) -> list[str]:
    return [u.text.strip() for u in word_units.units(rt.tokenizer, ids)]


def test_units_hold_whole_words_of_multi_token_prompts(tiny_rt):
    ids = tiny_rt.encode_prompt(PROMPT)
    assert len(ids) > len(PROMPT.split()) + 2  # the tiny vocabulary splits words into pieces
    assert _words(tiny_rt, ids) == ["Solve", "the", "problem", ",", "explain", "your", "reasoning", "."]
    spans = word_units.units(tiny_rt.tokenizer, ids)
    assert [t for u in spans for t in ids[u.start : u.end]] == list(ids)
    assert _words(tiny_rt, tiny_rt.encode_prompt("Let's think.")) == ["Let's", "think", "."]


def test_a_word_after_an_opening_mark_stays_glued_to_it(tiny_rt):
    rt = tiny_rt
    ids = rt.encode_prompt("The answer is (A).")
    units = word_units.split(rt.tokenizer, ids)
    at = [rt.decode(u).strip() for u in units].index("(")
    rejoined = word_units.join(rt.tokenizer, rt.layout.text_ids, units[:1], units[1:])
    assert rt.decode(rejoined) == "The answer is (A)."
    without_is = word_units.join(rt.tokenizer, rt.layout.text_ids, units[:2], units[3:])
    assert rt.decode(without_is) == "The answer (A)."
    inserted = word_units.join(
        rt.tokenizer, rt.layout.text_ids, units[:1], [*units[1:at], rt.encode_prompt(" B"), *units[at:]]
    )
    assert rt.decode(inserted) == "The answer is B (A)."


@pytest.fixture(scope="module")
def step(tiny_rt):
    task = builtin_task("compare")
    examples = task.examples[:6]
    readout = readout_of(task.answer_format, "choice", 3)
    prompt = tuple(tiny_rt.encode_prompt(PROMPT))
    current = rollout(tiny_rt, readout, examples, [prompt], 3)[0]
    settings = StepSettings(max_new_tokens=3, top_k=8, group_size=2, n_groups=4, n_evaluate=6, reading_top_k=10)

    def propose(slot: int, prompt_ids=prompt, seed: int = 0):
        rows = lambda p: forced_rows(tiny_rt, readout, examples, p, current.reasonings)  # noqa: E731
        return propose_word_moves(
            tiny_rt, rows, settings, examples, prompt_ids, slot, current.reasonings, random.Random(seed), 6
        )

    return propose, prompt, examples, settings


@pytest.mark.parametrize("slot", [0, 1, 2, 4, 7, 8])
def test_every_move_is_made_of_whole_words_and_changes_one_word(tiny_rt, step, slot):
    propose, prompt, _, _ = step
    before = _words(tiny_rt, prompt)
    proposal = propose(slot)
    assert proposal.moves, "a slot always offers moves"
    for move in proposal.moves:
        after = _words(tiny_rt, move.prompt)
        text = tiny_rt.decode(move.prompt)
        # no fragment left or created: the units are the old ones with exactly one changed
        assert readability(text)["non_words"] == [] or move.op == "delete", text
        if move.op == "insert":
            assert len(after) == len(before) + 1 and after[:slot] + after[slot + 1 :] == before
            if slot < len(before) and before[slot] != ".":
                assert word_distance(text, tiny_rt.decode(prompt)) == 1
        elif move.op == "delete":
            assert after == before[:slot] + before[slot + 1 :]
        else:
            assert len(after) == len(before) and after[slot] != before[slot]
            assert after[:slot] + after[slot + 1 :] == before[:slot] + before[slot + 1 :]
        if move.op != "delete":
            assert is_known(move.new.strip()) and after[slot] == move.new.strip()
    if slot >= len(before):
        assert {m.op for m in proposal.moves} == {"insert"}


def test_word_candidates_come_only_from_the_top_k_rule(tiny_rt, step):
    """The first token of every proposed word is one the top-k intersection rule admits at the
    slot, or one of the top-k with the prompt read on its own, both recomputed here from the
    model's own next-token distributions."""
    propose, prompt, examples, settings = step
    from gradprompt.nodes.word_moves import next_token_logprobs

    for slot in (1, 4):
        proposal = propose(slot)
        at = word_units.units(tiny_rt.tokenizer, prompt)[slot].start
        logp = next_token_logprobs(tiny_rt, [(e.question, tuple(prompt[:at])) for e in examples])
        _, later = word_units.word_start_masks(tiny_rt.tokenizer, tiny_rt.embedding_matrix.shape[0])
        groups = example_groups(len(examples), settings.group_size, settings.n_groups, random.Random(0))
        starts = later & tiny_rt.allowed_tokens
        rule = propose_candidates(logp, starts, [prompt[at]], top_k=settings.top_k, groups=groups, min_count=12)
        # then the likeliest word starts there with the prompt read on its own, from a plain forward
        enc = tiny_rt.reading_layout.encode("", tuple(prompt[:at]))
        with torch.no_grad():
            logits = tiny_rt.model(input_ids=torch.tensor([enc.ids[: enc.prompt[1]]])).logits[0, -1]
        usable = starts.clone()
        usable[[*rule, prompt[at]]] = False
        reading = logits.masked_fill(~usable, float("-inf")).topk(settings.reading_top_k).indices.tolist()
        assert proposal.candidates[: len(rule)] == rule
        assert proposal.candidates[len(rule) :] == reading
        rule = rule + reading
        for move in proposal.moves:
            if move.op != "delete":
                first = tiny_rt.layout.text_ids(move.new)[0]
                assert first in rule


def test_moves_start_at_the_prompt_start_without_a_space(tiny_rt, step):
    propose = step[0]
    for move in propose(0).moves:
        text = tiny_rt.decode(move.prompt)
        assert text and not text.startswith(" ")
    empty = propose(0, prompt_ids=()).moves
    assert empty and all(m.op == "insert" and len(_words(tiny_rt, m.prompt)) == 1 for m in empty)


def test_the_sweep_visits_every_gap_and_wraps(tiny_rt):
    prompt = tuple(tiny_rt.encode_prompt(PROMPT))
    n = len(word_units.units(tiny_rt.tokenizer, prompt))
    assert [next_slot(tiny_rt.tokenizer, prompt, s) for s in range(n + 1)] == [*range(1, n + 1), 0]


def test_token_moves_wrap_after_a_sentence_end_and_grow_a_prompt_without_one(tiny_rt):
    """GReaTer's token sweep: past the last token it starts again when the prompt ends a sentence,
    and otherwise appends a token."""
    ended = tuple(tiny_rt.encode_prompt("Think step by step."))
    open_ended = tuple(tiny_rt.encode_prompt("Think step by step"))
    assert tiny_rt.ends_sentence(ended[-1]) and not tiny_rt.ends_sentence(open_ended[-1])
    assert [next_position(tiny_rt, ended, p) for p in range(len(ended))] == [*range(1, len(ended)), 0]
    assert next_position(tiny_rt, open_ended, len(open_ended) - 1) == len(open_ended)
    assert next_position(tiny_rt, (), 0) == 0


def test_phrase_edits_on_a_fixed_prompt(tiny_rt):
    ids = tiny_rt.encode_prompt(PROMPT)
    text = lambda p: tiny_rt.decode(p)  # noqa: E731
    assert [[tiny_rt.decode(u) for u in p] for p in phrases(tiny_rt.tokenizer, ids)] == [
        ["Solve"],
        [" the", " problem"],
        [" explain"],
        [" your", " reasoning"],
    ]
    later = tiny_rt.encode_prompt(" step by step")
    edits = {(e.op, text(e.prompt)) for e in all_edits(tiny_rt.tokenizer, tiny_rt.layout.text_ids, ids, [later])}
    assert ("delete", "the problem, explain your reasoning.") in edits  # the next phrase loses its space
    assert ("delete", "Solve the problem, explain.") in edits
    assert ("delete", "Solve, explain your reasoning.") in edits
    assert ("swap", "Solve your reasoning, explain the problem.") in edits  # the comma stays in place
    assert ("swap", "the problem Solve, explain your reasoning.") in edits
    assert ("add", "Solve the problem, explain your reasoning step by step.") in edits  # before the full stop
    assert ("add", "step by step Solve the problem, explain your reasoning.") in edits
    assert len([e for e in edits if e[0] == "delete"]) == 4 and len([e for e in edits if e[0] == "swap"]) == 6
    # a one-phrase prompt offers no deletion of its only phrase and nothing to swap
    assert all_edits(tiny_rt.tokenizer, tiny_rt.layout.text_ids, tiny_rt.encode_prompt("Solve."), []) == []
    drawn = sample_edits(tiny_rt.tokenizer, tiny_rt.layout.text_ids, ids, [later], 3, random.Random(0))
    assert {e.op for e in drawn} == {"delete", "swap", "add"}  # one of each kind first


def test_readability_counts_words_a_person_knows():
    assert readability("Classify the sentiment of the review.") == {"known_words": 1.0, "non_words": []}
    assert readability("Inify the sentiment of the review.")["non_words"] == ["Inify"]
    assert readability("BEG iADEREDLadr")["known_words"] == 0.5
    assert readability("")["known_words"] == 1.0 and readability("Let's think step by step.")["non_words"] == []
    assert not is_known("S") and is_known("a") and is_known("I")
    assert is_known("Review") and is_known("REVIEW") and not is_known("reVIEW") and not is_known("doK")


def _reading_nll_by_hand(rt, ids) -> float:
    """The prompt's NLL as a whole user's message (its tokens and the end of the message after
    them), from one plain forward of the whole chat (no shared helper)."""
    enc = rt.reading_layout.encode("", tuple(ids))
    with torch.no_grad():
        logits = rt.model(input_ids=torch.tensor([enc.ids], device=rt.device)).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    start, end = enc.prompt
    return -sum(float(logp[i - 1, enc.ids[i]]) for i in range(start, end + 1))


def test_fluency_ranks_moves_by_what_they_add_to_the_whole_prompt(tiny_rt):
    from gradprompt.nodes.word_moves import WordMove, choose_moves

    rt = tiny_rt
    current = tuple(rt.encode_prompt("Solve the problem."))
    texts = ["Solve the big problem.", "Solve problem the.", "Solve the problem now.", "Please solve the problem."]
    moves = [
        WordMove(tuple(rt.encode_prompt(t)), "insert", 0, "", "x", gradient=float(g))
        for t, g in zip(texts, [0.3, -0.5, 0.1, 0.2], strict=True)
    ]
    deletion = WordMove(tuple(rt.encode_prompt("Solve problem.")), "delete", 1, "the", "")
    by_gradient = [m.prompt for m in sorted(moves, key=lambda m: m.gradient)]
    plain, dropped = choose_moves(rt, current, [*moves, deletion], 4, 0.0)
    assert [m.prompt for m in plain] == [*by_gradient, deletion.prompt] and dropped == 0
    assert all(m.fluency_cost is None for m in plain)

    chosen, dropped = choose_moves(rt, current, [*moves, deletion], 4, 1.0)
    assert dropped == 0 and chosen[-1].prompt == deletion.prompt, "the deletion comes after the ranked moves"
    from gradprompt.nodes.runtime.scoring import reading_nll

    assert reading_nll(rt, [()])[0] == pytest.approx(_reading_nll_by_hand(rt, ()), abs=2e-3), "an empty message"
    base = _reading_nll_by_hand(rt, current)
    for m in chosen:
        assert m.fluency_cost == pytest.approx(_reading_nll_by_hand(rt, m.prompt) - base, abs=2e-3)
    ranked = chosen[:-1]
    # rank sum, ties to the gradient: recomputed from the costs
    costs = sorted(ranked, key=lambda m: m.fluency_cost)
    fluency_rank = {m.prompt: r for r, m in enumerate(costs)}
    expect = sorted(range(4), key=lambda i: (i + fluency_rank[by_gradient[i]], i))
    assert [m.prompt for m in ranked] == [by_gradient[i] for i in expect]
    # a very large weight orders by fluency alone; n bounds the ranked moves
    assert [m.prompt for m in choose_moves(rt, current, moves, 4, 1e6)[0]] == [m.prompt for m in costs]
    assert len(choose_moves(rt, current, moves, 2, 1.0)[0]) == 2

    # the limit drops exactly the moves that cost more, the deletion included, and counts them
    every = sorted(m.fluency_cost for m in chosen)
    limit = (every[1] + every[2]) / 2
    gated, dropped = choose_moves(rt, current, [*moves, deletion], 4, 1.0, limit)
    assert dropped == 3 and len(gated) == 2
    assert all(m.fluency_cost <= limit for m in gated)
    assert {m.prompt for m in gated} == {m.prompt for m in chosen if m.fluency_cost <= limit}


def test_phrase_edits_and_retrieved_prompts_keep_to_the_fluency_limit(tiny_rt):
    """The limit holds for every source the search races on its own: phrase edits and retrieved
    prompts over it are not raced, and are counted."""
    from types import SimpleNamespace

    from gradprompt.nodes.proposers import PhraseEdits, Retrieval, StepView
    from gradprompt.nodes.runtime.scoring import reading_nll

    rt = tiny_rt
    prompt = tuple(rt.encode_prompt("Solve the problem, explain your reasoning, and check it."))
    state = {"prompt": list(prompt), "step": 0, "prompt_text": rt.decode(prompt), "deleted_phrases": []}

    def view(**settings):
        run = RunSettings(task="builtin:compare", **settings)
        return StepView(SimpleNamespace(rt=rt, settings=run), dict(state))

    free = view(fluency_max_cost=None)
    every = PhraseEdits(6).propose(free)
    assert every and all(c.fluency_cost is None for c in every)
    base = reading_nll(rt, [prompt])[0]
    costs = sorted(c - base for c in reading_nll(rt, [c.prompt for c in every]))
    limit = (costs[0] + costs[1]) / 2  # exactly one of them passes
    gated = view(fluency_max_cost=limit)
    kept = PhraseEdits(6).propose(gated)
    assert all(c.fluency_cost <= limit for c in kept) and len(kept) >= 1
    assert gated.notes["disfluent"] == min(len(every), 6) - len(kept)

    one, two = (tuple(rt.encode_prompt(t)) for t in ("zq problem the xv,, check", "Solve the problem, check it."))
    cost = dict(zip((one, two), (c - base for c in reading_nll(rt, [one, two])), strict=True))
    worse, better = sorted((one, two), key=cost.get, reverse=True)  # the random model's own reading
    state["retrieved"] = [  # the worse-reading prompt has the better score
        {"prompt": list(worse), "text": rt.decode(worse), "score": 0.1},
        {"prompt": list(better), "text": rt.decode(better), "score": 0.3},
    ]
    assert Retrieval().propose(view(fluency_max_cost=None))[0].prompt == worse, "without a limit: the best score"
    limited = view(fluency_max_cost=(cost[worse] + cost[better]) / 2)
    assert [c.prompt for c in Retrieval().propose(limited)] == [better]
    strict = view(fluency_max_cost=cost[better] - 1)
    assert Retrieval().propose(strict) == [] and strict.notes["disfluent"] == 1


def _complete_by_recomputing(rt, prefix, first_tokens):
    """The plain reference: every pass feeds each row's whole sequence again."""
    from gradprompt.nodes.word_moves import MAX_WORD_TOKENS

    words = []
    for t in first_tokens:
        word = [int(t)]
        for _ in range(MAX_WORD_TOKENS - 1):
            with torch.no_grad():
                logits = rt.model(input_ids=torch.as_tensor([[*prefix, *word]]), use_cache=False).logits
            nxt = int(logits[0, -1].argmax())
            if not word_units.continues_word(rt.tokenizer, word[-1], nxt):
                break
            word.append(nxt)
        words.append(tuple(word))
    return words


@pytest.mark.parametrize("prefix_text", ["", "Solve the"])
def test_words_are_completed_as_recomputing_each_row_whole_would(tiny_rt, prefix_text):
    from gradprompt.nodes.word_moves import complete_words

    prefix = tuple(tiny_rt.encode_prompt(prefix_text))
    first_mask, later_mask = word_units.word_start_masks(tiny_rt.tokenizer, len(tiny_rt.tokenizer))
    starts = (later_mask if prefix else first_mask).nonzero()[:, 0].tolist()
    first = starts[:: max(1, len(starts) // 150)][:150]
    got = complete_words(tiny_rt, prefix, first)
    assert got == _complete_by_recomputing(tiny_rt, prefix, first)
    assert any(len(w) > 1 for w in got), "the construction needs some words to grow"
