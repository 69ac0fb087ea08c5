"""When a run stops early (patience, a target accuracy) and what each acceptance rule does with a
real race, on the tiny in-process model: the rule decides from the same candidates the race ran."""

from __future__ import annotations

import pytest
from helpers import TINY_MODEL_RUN

from gradprompt.graph import optimize
from gradprompt.nodes.advance import stop_reason
from gradprompt.nodes.settings import RunSettings


def _settings(**extra) -> RunSettings:
    return RunSettings(task="builtin:compare", steps=10, **extra)


def test_patience_counts_steps_without_a_better_prompt():
    st = _settings(patience=2)
    assert stop_reason(st, 3, 1, 0.5) == ""
    assert stop_reason(st, 3, 2, 0.5) == "no better prompt in 2 steps"
    assert stop_reason(_settings(), 3, 50, 0.5) == ""  # no patience set: never stops for it


def test_target_accuracy_stops_only_on_a_pool_accuracy_that_reaches_it():
    st = _settings(target_accuracy=0.5)
    assert stop_reason(st, 3, 0, 0.5) == "pool accuracy 0.50 reached the target"
    assert stop_reason(st, 3, 0, 0.49) == ""
    assert stop_reason(st, 3, 0, None) == ""  # a decision not scored on the whole pool
    assert stop_reason(st, 10, 0, 0.9) == "step budget of 10 reached"  # the step budget speaks first


def test_a_reached_target_ends_the_run_after_that_step(tmp_path, on_tiny_model):
    first = optimize("builtin:compare", steps=1, run_dir=tmp_path / "one", **TINY_MODEL_RUN)
    reached = first.history[0]["accepted"]["accuracy"]
    assert reached > 0, "the first step's prompt answers no pool example right: no target to set"
    result = optimize("builtin:compare", steps=5, target_accuracy=reached, run_dir=tmp_path / "to", **TINY_MODEL_RUN)
    assert result.steps == 1 and result.stop_reason == f"pool accuracy {reached:.2f} reached the target"
    assert result.final.get("baseline")  # finalized as after any run


def test_patience_ends_the_run_where_the_best_stopped_rising(tmp_path, on_tiny_model):
    # a 3-example pool: the best accuracy can rise at most three times in six steps
    plain = optimize("builtin:compare", steps=6, run_dir=tmp_path / "plain", **TINY_MODEL_RUN)
    patient = optimize("builtin:compare", steps=6, patience=1, run_dir=tmp_path / "patient", **TINY_MODEL_RUN)
    assert patient.steps < 6 and patient.stop_reason == "no better prompt in 1 steps"
    # the same search, cut short (seconds apart)
    assert _timeless(patient.history) == _timeless(plain.history[: patient.steps])


def _timeless(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "timings"} for h in history]


def _rank(c: dict) -> tuple:
    return (c["right"], round(c["gold_logprob"], 6))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_acceptance_rule_decides_on_the_same_race(tmp_path, on_tiny_model, seed):
    runs = {
        rule: optimize(
            "builtin:compare", steps=2, seed=seed, acceptance=rule, run_dir=tmp_path / rule, **TINY_MODEL_RUN
        ).history
        for rule in ("always", "not_worse", "better")
    }
    step0 = {rule: h[0] for rule, h in runs.items()}
    candidates = [c for c in step0["always"]["candidates"] if c.get("finished")]
    assert candidates, "no candidate finished the race: nothing for the rules to decide"
    for h in step0.values():  # the race does not depend on the rule
        assert [(c["text"], c.get("right")) for c in h["candidates"]] == [
            (c["text"], c.get("right")) for c in step0["always"]["candidates"]
        ]
    best = max(candidates, key=_rank)
    current = step0["always"]["current"]
    assert step0["always"]["changed"] and step0["always"]["accepted"]["text"] == best["text"]
    for rule, should_move in (
        ("better", best["right"] > current["right"]),
        ("not_worse", _rank(best) >= _rank(current)),
    ):
        h = step0[rule]
        assert h["changed"] == should_move, (rule, best, current)
        assert h["accepted"]["text"] == (best["text"] if should_move else current["text"])
        assert h["accepted"]["reason"].startswith(f"{rule}:")
        if not should_move:  # the next step searches from the prompt that stayed
            assert runs[rule][1]["prompt"] == h["prompt"]
