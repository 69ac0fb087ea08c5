"""The search's decision rules (nodes/decisions.py) on known counts, and the rollout cache and
racing path on the tiny random model."""

from __future__ import annotations

import random

import pytest
import torch
from scipy.stats import binomtest

from gradprompt.nodes.decisions import (
    Contender,
    Outcome,
    RaceResult,
    SelectionConfig,
    accept,
    final_choice,
    paired_gain,
    race,
    slices_for,
    update_best,
)
from gradprompt.nodes.greater import gradient_batch, pool_order, rollout
from gradprompt.nodes.rollout_cache import RolloutCache, cache_namespace
from gradprompt.nodes.runtime.candidates import example_groups
from gradprompt.nodes.runtime.model_runtime import PLAIN_TOKEN
from gradprompt.nodes.tasks import builtin_task


def outcomes(correct: list[bool], logprob: float = -1.0) -> list[Outcome]:
    return [Outcome(c, logprob, 1.0) for c in correct]


def table_evaluator(table: dict[tuple, list[Outcome]], calls: list):
    def evaluate(prompts, start, stop):
        calls.append((tuple(prompts), start, stop))
        return [table[p][start:stop] for p in prompts]

    return evaluate


# ----- racing ----------------------------------------------------------------------------------
def test_race_drops_a_worse_candidate_early_and_keeps_a_better_one():
    n = 32
    rng = random.Random(0)
    current = [rng.random() < 0.5 for _ in range(n)]
    better = [True if not c and i % 2 == 0 else c for i, c in enumerate(current)]  # fixes half its misses
    worse = [False] * n  # wrong everywhere
    table = {(1,): outcomes(better), (2,): outcomes(worse)}
    calls: list = []
    result = race([(1,), (2,)], outcomes(current), table_evaluator(table, calls), SelectionConfig(race_slices=(8, 16)))
    by = {c.prompt: c for c in result.contenders}
    assert by[(1,)].evaluated == n and not by[(1,)].stopped
    assert by[(2,)].evaluated < n and "behind" in by[(2,)].stopped
    assert [c.prompt for c in result.finished] == [(1,)]
    # every slice was asked for once, for the candidates still running, on the same examples as the current
    assert [(start, stop) for _, start, stop in calls] == [(0, 8), (8, 16), (16, 32)]
    assert (2,) not in calls[-1][0]


def test_race_keeps_a_candidate_that_ties_the_current_prompt():
    current = [i % 3 == 0 for i in range(24)]
    table = {(5,): outcomes(list(current))}
    result = race([(5,)], outcomes(current), table_evaluator(table, []), SelectionConfig(race_slices=(8,)))
    assert result.finished[0].prompt == (5,) and result.finished[0].evaluated == 24


def test_a_tie_with_disagreements_never_stops_even_at_a_loose_alpha():
    """At alpha 0.99 a tied one-sided test passes, but a candidate with as many right is not behind."""
    current = [True, False] * 8
    swapped = [False, True] * 8  # disagrees everywhere, as many right
    config = SelectionConfig(race_slices=(4, 8), race_alpha=0.99)
    result = race(
        [(6,), (7,)], outcomes(current), table_evaluator({(6,): outcomes(swapped), (7,): outcomes(swapped)}, []), config
    )
    assert [c.evaluated for c in result.contenders] == [16, 16] and not any(c.stopped for c in result.contenders)


def test_stop_reason_carries_an_exact_p_value_within_alpha():
    current = [True] * 8 + [False] * 8
    worse = [False] * 16
    result = race([(3,)], outcomes(current), table_evaluator({(3,): outcomes(worse)}, []), SelectionConfig())
    (c,) = result.contenders
    assert c.evaluated == 8
    p = binomtest(8, 8, 0.5, alternative="greater").pvalue
    assert f"p={p:.3f}" in c.stopped and p <= 0.2


def test_slices_end_with_the_whole_pool():
    assert slices_for(50, (8, 16, 32)) == [8, 16, 32, 50]
    assert slices_for(10, (8, 16, 32)) == [8, 10]
    assert slices_for(0, (8,)) == []


# ----- acceptance -----------------------------------------------------------------------------------
def _race_of(*candidates: tuple[tuple, list[bool], float]) -> RaceResult:
    return RaceResult([Contender(p, outcomes(c, lp)) for p, c, lp in candidates], len(candidates[0][1]), [])


@pytest.mark.parametrize(
    ("rule", "cand_correct", "cand_lp", "moves"),
    [
        ("always", [True, False, False, False], -1.0, True),  # worse, but always moves
        ("not_worse", [True, False, False, False], -1.0, False),  # fewer right
        ("not_worse", [True, True, False, False], -0.5, True),  # tie on accuracy, higher gold log-prob
        ("not_worse", [True, True, False, False], -2.0, False),  # tie on accuracy, lower gold log-prob
        ("better", [True, True, False, False], -0.1, False),  # a tie is not better
        ("better", [True, True, True, False], -3.0, True),  # one more right
    ],
)
def test_acceptance_rules(rule, cand_correct, cand_lp, moves):
    current = outcomes([True, True, False, False], -1.0)
    decision = accept((0,), current, _race_of(((9,), cand_correct, cand_lp)), rule)
    assert decision.moved is moves
    assert decision.prompt == ((9,) if moves else (0,))
    assert decision.reason.startswith(rule)


def test_acceptance_without_finishers_stays_unless_always():
    result = RaceResult([Contender((7,), outcomes([False] * 8), stopped="behind")], 16, [])
    assert not accept((0,), outcomes([True] * 16), result, "not_worse").moved
    assert accept((0,), outcomes([True] * 16), result, "always").prompt == (7,)


def test_best_list_ranks_on_the_pool_and_reports_a_rise_in_accuracy():
    a = {"prompt": [1], "right": 5, "gold_logprob": -1.0, "nll": 2.0}
    b = {"prompt": [2], "right": 5, "gold_logprob": -0.5, "nll": 3.0}
    c = {"prompt": [3], "right": 6, "gold_logprob": -4.0, "nll": 1.0}
    best, rose = update_best([], [a], keep=2)
    assert rose and best == [a]
    best, rose = update_best(best, [b], keep=2)
    assert not rose and [x["prompt"] for x in best] == [[2], [1]]  # same accuracy: gold log-prob ranks
    best, rose = update_best(best, [c], keep=2)
    assert rose and [x["prompt"] for x in best] == [[3], [2]]


# ----- the final choice -------------------------------------------------------------------------------
def test_final_choice_keeps_the_initial_prompt_on_a_tie():
    base = outcomes([True] * 20 + [False] * 20)
    tie = outcomes([False] * 20 + [True] * 20, logprob=0.0)  # as many right, better log-prob
    choice = final_choice(base, [tie], alpha=0.05, rule="bonferroni")
    assert choice.kept_initial and choice.leader == 0 and "no candidate answered more" in choice.reason
    assert final_choice(base, [tie], alpha=0.05).kept_initial  # the fixed sequence too


def test_final_choice_keeps_the_initial_prompt_on_an_insignificant_lead():
    base = outcomes([True] * 20 + [False] * 20)
    lead = outcomes([True] * 22 + [False] * 18)  # 2 more right: p = 0.25
    choice = final_choice(base, [lead], alpha=0.05, advice="try --steps 20", rule="bonferroni")
    assert choice.kept_initial and choice.p_value == pytest.approx(0.25)
    assert "not significant" in choice.reason and choice.reason.endswith("try --steps 20")
    fixed = final_choice(base, [lead], alpha=0.05, advice="try --steps 20")
    assert fixed.kept_initial and fixed.p_value == pytest.approx(0.25) and fixed.reason.endswith("try --steps 20")


def test_final_choice_switches_on_a_significant_lead_and_splits_alpha_over_candidates():
    base = outcomes([True] * 20 + [False] * 20)
    strong = outcomes([True] * 27 + [False] * 13)  # 7 discordant pairs, all for it: p = 1/128
    choice = final_choice(base, [strong], alpha=0.05, rule="bonferroni")
    assert not choice.kept_initial and choice.chosen == 0
    assert choice.p_value == pytest.approx(1 / 128) and choice.gain.gain == pytest.approx(7 / 40)
    five = outcomes([True] * 25 + [False] * 15)  # p = 1/32 = 0.031: significant alone, not among 3
    assert not final_choice(base, [five], alpha=0.05, rule="bonferroni").kept_initial
    many = final_choice(base, [outcomes([False] * 40), five, outcomes([False] * 40)], alpha=0.05, rule="bonferroni")
    assert many.kept_initial and many.leader == 1 and many.threshold == pytest.approx(0.05 / 3)


def test_paired_gain_interval_contains_the_difference_and_narrows_with_more_examples():
    small = paired_gain([True] * 6 + [False] * 4, [True] * 4 + [False] * 6)
    large = paired_gain(([True] * 6 + [False] * 4) * 10, ([True] * 4 + [False] * 6) * 10)
    for g in (small, large):
        assert g.gain == pytest.approx(0.2) and g.low < g.gain < g.high and g.low >= -1 and g.high <= 1
    assert large.high - large.low < small.high - small.low
    # Agresti-Min by hand: 10 examples, 2 only right with a, none only with b
    hand = paired_gain([True, True] + [False] * 8, [False] * 10)
    assert (hand.low, hand.high) == pytest.approx(
        (2.5 / 12 - 0.5 / 12 - 0.26672, 2.5 / 12 - 0.5 / 12 + 0.26672), abs=1e-4
    )
    same = paired_gain([True, False] * 10, [True, False] * 10)
    assert same.gain == 0 and same.low < 0 < same.high and same.p_value == 1.0  # no change is not certainty
    swapped = paired_gain([True] * 4 + [False] * 6, [True] * 6 + [False] * 4)
    assert swapped.low == pytest.approx(-small.high) and swapped.high == pytest.approx(-small.low)


# ----- candidates -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "size"), [(6, 5), (8, 5), (50, 5), (5, 5)])
def test_example_groups_hold_group_size_distinct_examples(n, size):
    groups = example_groups(n, size, 6, random.Random(1))
    assert groups and all(len(g) == len(set(g)) == min(size, n) for g in groups)
    assert all(0 <= i < n for g in groups for i in g)
    assert len(groups) == (1 if n <= size else 6)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("word", True),
        (" Word", True),
        (".", True),
        (",", True),
        ("  two", False),
        ("é", False),
        (" café", False),
        ("中", False),
        ("\u200b", False),
        ("`", False),
        ("!", False),
        (" .", False),
        ("abc\n", False),
        ("a1", False),
        ("\ufffd", False),
        ("", False),
    ],
)
def test_token_filter_allows_ascii_words_and_two_punctuation_tokens(text, ok):
    assert bool(PLAIN_TOKEN.fullmatch(text)) is ok


def test_tiny_vocabulary_mask_follows_the_filter(tiny_rt):
    allowed = tiny_rt.allowed_tokens.tolist()
    special = set(tiny_rt.tokenizer.all_special_ids)
    for i in range(len(tiny_rt.tokenizer)):
        text = tiny_rt.tokenizer.decode([i])
        # both directions: every allowed token is plain, and every plain token is allowed
        assert allowed[i] == (bool(PLAIN_TOKEN.fullmatch(text)) and i not in special), (i, text)
    assert 0 < sum(allowed) < len(allowed)


def test_the_vocabulary_is_scanned_once_per_tokenizer_not_per_runtime():
    """Runtimes of one model with other placements share the scan; another vocabulary gets its own."""
    from tiny_model import tiny_loaded

    from gradprompt.nodes.runtime import model_runtime as runtime_module
    from gradprompt.nodes.runtime.model_runtime import ModelRuntime

    loaded = tiny_loaded()
    runtime_module._MASKS.clear()
    scans = []
    real = loaded.tokenizer.batch_decode
    loaded.tokenizer.batch_decode = lambda ids, **kw: scans.append(len(ids)) or real(ids, **kw)
    first = ModelRuntime(loaded, placement="after").allowed_tokens
    second = ModelRuntime(loaded, placement="system").allowed_tokens
    assert len(scans) == 1 and torch.equal(first, second)
    loaded.tokenizer.add_tokens(["zebra"])  # a different vocabulary is scanned again
    third = ModelRuntime(loaded).allowed_tokens
    assert len(scans) == 2 and third.shape == first.shape


# ----- the pool, the cache and a race on the tiny model ---------------------------------------------------
def test_pool_order_and_gradient_batches_are_fixed_by_the_seed():
    pool = list(range(50))
    assert pool_order(pool, 3) == pool_order(pool, 3) != pool_order(pool, 4)
    assert sorted(pool_order(pool, 3)) == pool
    batch = gradient_batch(pool, 8, 0, 2)
    assert batch == gradient_batch(pool, 8, 0, 2) and len(set(batch)) == 8


def test_cached_rollout_never_rolls_out_a_pair_twice(tiny_rt):
    rt = tiny_rt
    task = builtin_task("compare")
    fmt = task.answer_format
    examples = task.examples[:6]
    cache = RolloutCache(None, cache_namespace("tiny-cache-test"))
    a, b = tuple(rt.encode_prompt("Think step by step.")), tuple(rt.encode_prompt("Answer carefully."))
    first = rollout(rt, fmt, examples[:4], [a], 6, cache=cache)
    calls = rt.usage.snapshot().calls
    again = rollout(rt, fmt, examples[:4], [a], 6, cache=cache)
    assert rt.usage.snapshot().calls == calls  # no model call
    assert again[0].outcomes == first[0].outcomes
    mixed = rollout(rt, fmt, examples, [a, b], 6, cache=cache)  # only the missing pairs are rolled out
    assert cache.misses == 4 + 2 + 6 and cache.hits == 4 + 4
    plain = rollout(rt, fmt, examples, [a, b], 6)
    for got, want in zip(mixed, plain, strict=True):
        assert got.correct == want.correct and got.reasonings == want.reasonings
        assert got.gold_logprobs == pytest.approx(want.gold_logprobs, abs=1e-4)


def test_race_on_the_tiny_model_compares_on_the_same_examples(tiny_rt):
    rt = tiny_rt
    task = builtin_task("compare")
    fmt = task.answer_format
    pool = task.examples[:12]
    cache = RolloutCache(None, cache_namespace("tiny-race-test"))
    current_prompt = tuple(rt.encode_prompt("Think step by step."))
    current = rollout(rt, fmt, pool, [current_prompt], 6, cache=cache)[0]
    prompts = [tuple(rt.encode_prompt(t)) for t in ("Answer carefully.", "Yes or no.", "Check the numbers.")]

    def evaluate(alive, start, stop):
        rolled = rollout(rt, fmt, pool[start:stop], alive, 6, drafts=current.reasonings[start:stop], cache=cache)
        return [r.outcomes for r in rolled]

    result = race(prompts, current.outcomes, evaluate, SelectionConfig(race_slices=(4, 8), race_alpha=0.3))
    full = rollout(rt, fmt, pool, prompts, 6)
    for c, want in zip(result.contenders, full, strict=True):
        assert c.evaluated in (4, 8, 12)
        assert c.correct == want.correct[: c.evaluated]  # racing changes nothing about the results
        assert (c.evaluated < 12) == bool(c.stopped)


def test_a_candidate_that_runs_the_whole_pool_finishes_and_the_rule_judges_it():
    current = [True] * 16
    late_loser = [True] * 8 + [False] * 8  # level on the first slice, far behind on the pool
    result = race([(4,)], outcomes(current), table_evaluator({(4,): outcomes(late_loser)}, []), SelectionConfig((8,)))
    (c,) = result.contenders
    assert c.evaluated == 16 and not c.stopped and result.finished == [c]
    assert not accept((0,), outcomes(current), result, "not_worse").moved
    assert accept((0,), outcomes(current), result, "always").prompt == (4,)
