"""The final choice's rules on constructed dev outcomes: the fixed sequence passes a real lead at
the full alpha, its test order never depends on dev, and under the null it changes the prompt at
most alpha of the time."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from scipy.stats import binomtest

from gradprompt.nodes.decisions import Outcome, final_choice, p_better
from gradprompt.nodes.finalize import choose, finalists, start_of


def outcomes(correct: list[bool], margins: list[float] | None = None) -> list[Outcome]:
    margins = margins or [1.0 if c else -1.0 for c in correct]
    return [Outcome(c, -1.0, 1.0, margin=m) for c, m in zip(correct, margins, strict=True)]


BASE = [True] * 100 + [False] * 100


def lead(extra: int) -> list[bool]:
    """BASE with ``extra`` more examples right (all discordant pairs for the candidate)."""
    return [True] * (100 + extra) + [False] * (100 - extra)


def test_a_leader_at_p_003_ranked_first_on_the_pool_passes_at_alpha_005():
    leader = lead(5)  # 5 discordant, all for it: one-sided p = 1/32 = 0.031
    p = p_better(leader, BASE)
    assert 0.025 < p < 0.035
    finalists = [outcomes(leader), outcomes(lead(1)), outcomes(BASE)]
    fixed = final_choice(outcomes(BASE), finalists, alpha=0.05)
    assert not fixed.kept_initial and fixed.chosen == 0 and fixed.threshold == 0.05
    # Bonferroni over the three finalists refuses the same lead (0.031 > 0.05 / 3)
    assert final_choice(outcomes(BASE), finalists, alpha=0.05, rule="bonferroni").kept_initial


def test_the_fixed_sequence_stops_at_the_first_failure_and_hands_back_the_dev_best_that_passed():
    strong, stronger, weak = lead(8), lead(10), lead(1)
    passed_two = final_choice(outcomes(BASE), [outcomes(strong), outcomes(stronger), outcomes(weak)], 0.05)
    assert passed_two.chosen == 1 and [t["passed"] for t in passed_two.tests] == [True, True, False]
    # a failing first finalist ends the sequence: a later, stronger one is never tested
    blocked = final_choice(outcomes(BASE), [outcomes(weak), outcomes(stronger)], 0.05)
    assert blocked.kept_initial and len(blocked.tests) == 1 and blocked.leader == 1


def test_permuting_the_dev_results_never_changes_the_test_order():
    rng = random.Random(3)
    finalists = [[rng.random() < 0.5 for _ in range(200)] for _ in range(4)]
    for _ in range(20):
        order = list(range(200))
        rng.shuffle(order)
        shuffled = [outcomes([f[i] for i in order]) for f in finalists]
        choice = final_choice(outcomes([BASE[i] for i in order]), shuffled, 0.05)
        assert [t["candidate"] for t in choice.tests] == list(range(len(choice.tests)))
        # the same examples in another order give the same tests and the same choice
        again = final_choice(outcomes(BASE), [outcomes(f) for f in finalists], 0.05)
        assert [t["p_value"] for t in choice.tests] == pytest.approx([t["p_value"] for t in again.tests])
        assert choice.chosen == again.chosen


@pytest.mark.parametrize("rule", ["fixed_sequence", "pool_order", "shared_alpha", "bonferroni", "margin"])
def test_under_the_null_the_prompt_changes_at_most_alpha_of_the_time(rule):
    """2,000 runs where every finalist is exactly as good as the initial prompt: each example's
    right/wrong and margin are drawn alike for all of them (correlated through the example's
    difficulty, as prompts of one model are)."""
    rng = random.Random(0)
    alpha, runs, n, changed = 0.05, 2000, 100, 0
    for _ in range(runs):
        difficulty = [rng.random() for _ in range(n)]

        def prompt(difficulty=difficulty):
            right = [rng.random() < 0.3 + 0.4 * d for d in difficulty]
            return outcomes(right, [rng.gauss(2 * d - 1, 1) for d in difficulty])

        initial = prompt()
        choice = final_choice(initial, [prompt() for _ in range(3)], alpha, rule=rule, start_apart=True)
        changed += not choice.kept_initial
    # the rate of change is at most alpha: a one-sided test that it exceeds alpha does not reject
    assert binomtest(changed, runs, alpha, alternative="greater").pvalue > 0.01, f"{changed}/{runs} changed"
    assert changed / runs <= alpha + 0.01


def test_the_dev_argmax_without_a_correction_would_fail_that_bound():
    """The null simulation can fail: choosing the dev leader at the uncorrected alpha among three
    finalists changes the prompt too often."""
    rng = random.Random(1)
    runs, changed = 2000, 0
    for _ in range(runs):
        initial = [rng.random() < 0.5 for _ in range(100)]
        finalists = [[rng.random() < 0.5 for _ in range(100)] for _ in range(3)]
        best = max(finalists, key=sum)
        changed += p_better(best, initial) <= 0.05
    assert binomtest(changed, runs, 0.05, alternative="greater").pvalue < 0.01


def test_the_margin_rule_needs_a_margin_gain_and_no_accuracy_loss():
    margins = [0.5] * 200
    better_margin = outcomes(BASE, [m + 1.0 for m in margins])
    assert not final_choice(outcomes(BASE, margins), [better_margin], 0.05, rule="margin").kept_initial
    # a larger margin on average but clearly fewer examples right is refused
    worse = lead(-20)
    loses = outcomes(worse, [5.0] * 200)
    assert final_choice(outcomes(BASE, margins), [loses], 0.05, rule="margin").kept_initial


def test_the_search_start_is_tested_first_and_pool_order_keeps_the_pool_rank():
    initial, empty, soup, words, other = (1, 2), (), (7, 8), (9,), (5, 6)
    ranked = [soup, words, empty, initial, other]  # the search's prompts lead the pool, overfitted
    ordered, pool_rank = finalists(initial, empty, ranked, k=2)
    assert ordered == [empty, soup, words]  # the start first, then the k best search prompts
    assert [ordered[i] for i in pool_rank] == [soup, words, empty]
    # a start pushed off the pool's best list comes last in pool rank
    ordered, pool_rank = finalists(initial, (3,), ranked, k=2)
    assert ordered == [(3,), soup, words] and [ordered[i] for i in pool_rank] == [soup, words, (3,)]
    # a run that started from the initial prompt tests the search's prompts alone, in pool rank
    ordered, pool_rank = finalists(initial, initial, ranked, k=3)
    assert ordered == [soup, words, empty] and pool_rank == [0, 1, 2]


def test_a_baseline_start_that_beats_the_initial_prompt_passes_before_an_overfitted_prompt_can_block_it():
    """The case seen on sentiment with reasoning: the empty prompt was the search's start and is
    13 points better, the search's pool leader is no better than the initial prompt."""
    dev = [SimpleNamespace(outcomes=outcomes(o)) for o in (BASE, lead(20), lead(1), lead(0))]
    start_first = choose(dev, [0, 1, 2], "fixed_sequence", 0.05)
    assert start_first.chosen == 0 and [t["passed"] for t in start_first.tests] == [True, False]
    in_pool_order = choose(dev, [1, 2, 0], "pool_order", 0.05)
    assert in_pool_order.kept_initial and [t["candidate"] for t in in_pool_order.tests] == [1]
    assert in_pool_order.leader == 0  # indices point into the finalists' own list, whatever the order
    assert "pool order" in in_pool_order.reason and "start-first order" in start_first.reason


def test_shared_alpha_lets_neither_the_start_nor_the_search_end_the_others_testing():
    base = outcomes(BASE)
    # a real start and a null search head: the start passes at alpha / 2 and hands its level on
    start_only = final_choice(
        base, [outcomes(lead(20)), outcomes(lead(0))], 0.05, rule="shared_alpha", start_apart=True
    )
    assert start_only.chosen == 0 and [t["passed"] for t in start_only.tests] == [True, False]
    assert start_only.tests[1]["level"] == pytest.approx(0.05)  # the head was retried at the full level
    # a null start and a real search: the start-first fixed sequence stops, shared alpha does not
    search_only = [outcomes(lead(0)), outcomes(lead(20)), outcomes(lead(25))]
    assert final_choice(base, search_only, 0.05, order="start first").kept_initial
    shared = final_choice(base, search_only, 0.05, rule="shared_alpha", start_apart=True)
    assert shared.chosen == 2 and [t["passed"] for t in shared.tests] == [False, True, True]
    # a start at p=0.031 fails alpha / 2 alone, and passes once the search's prompts all passed
    handed_back = final_choice(
        base, [outcomes(lead(5)), outcomes(lead(20))], 0.05, rule="shared_alpha", start_apart=True
    )
    assert [t["passed"] for t in handed_back.tests] == [True, True] and handed_back.tests[0]["level"] == 0.05
    assert handed_back.chosen == 1  # the dev-best of the two
    # a search head at p=0.031 is refused at alpha / 2 when the start fails: the price of the split
    assert final_choice(
        base, [outcomes(lead(0)), outcomes(lead(5))], 0.05, rule="shared_alpha", start_apart=True
    ).kept_initial


def test_the_empty_prompt_is_a_start_and_a_run_without_a_race_starts_from_the_initial_prompt():
    initial = {"prompt": [5, 6]}
    assert start_of({"baseline": initial, "start": {"prompt": [], "name": "empty"}}) == ()
    assert start_of({"baseline": initial, "start": {"prompt": [7], "name": "step by step"}}) == (7,)
    assert start_of({"baseline": initial}) == (5, 6)
    ordered, _ = finalists((5, 6), start_of({"baseline": initial, "start": {"prompt": []}}), [(9,), ()], k=3)
    assert ordered == [(), (9,)]


def test_the_rules_power_benchmark_reports_every_rule_and_scenario(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "final_rules.py"
    spec = importlib.util.spec_from_file_location("final_rules_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--runs", "30", "--dev", "100", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "final_rules.json").read_text())["results"]
    assert [r["scenario"] for r in results] == [s[0] for s in bench.SCENARIOS]
    null = results[0]
    assert all(null[rule]["mean_gain"] == 0 for rule in bench.RULES)  # nothing better to hand back
    # a start 8 points better is handed back by the start-first rule far more often than by pool order
    start_only = results[1]
    assert start_only["fixed_sequence"]["changed"] > start_only["pool_order"]["changed"]
    assert "| scenario | shared_alpha |" in (tmp_path / "final_rules.md").read_text()
