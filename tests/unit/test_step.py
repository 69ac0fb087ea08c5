"""The step's seams: any proposer offers through one call, any acceptance rule decides a race,
and every variant and acceptance rule a user can name has its class."""

from __future__ import annotations

import typing
from types import SimpleNamespace

from gradprompt.nodes.decisions import ACCEPTANCE, Contender, Decision, Outcome, RaceResult, accept
from gradprompt.nodes.proposers import Candidate
from gradprompt.nodes.settings import RunSettings
from gradprompt.nodes.step import VARIANTS, offer


class _Fixed:
    def __init__(self, source: str, prompts: list[tuple[int, ...]]):
        self.source, self.prompts = source, prompts

    def propose(self, view) -> list[Candidate]:
        view.notes[self.source] = len(self.prompts)
        return [Candidate(p, self.source, f"{self.source} {i}") for i, p in enumerate(self.prompts)]


def test_every_source_offers_through_one_call_in_order():
    state = {"prompt": [1, 2], "step": 0}
    new, notes = offer(SimpleNamespace(), state, [_Fixed("a", [(3,), (4,)]), _Fixed("b", [(5,)])])
    assert [(c["prompt"], c["source"], c["move"]) for c in new] == [
        ([3], "a", "a 0"),
        ([4], "a", "a 1"),
        ([5], "b", "b 0"),
    ]
    assert notes == {"a": 2, "b": 1}


def _outcomes(right: list[bool]) -> list[Outcome]:
    return [Outcome(r, -1.0 if r else -3.0, 1.0, (), "x") for r in right]


class _Never:
    name = "never"
    explores = False

    def decide(self, current, ours, best, summary) -> Decision:
        return Decision(current, False, f"never: {summary}")


def test_an_acceptance_rule_is_any_object_with_decide():
    race = RaceResult([Contender((9,), _outcomes([True] * 4))], 4, [4])
    current = _outcomes([False] * 4)
    assert accept((1,), current, race, "better").moved
    kept = accept((1,), current, race, _Never())
    assert not kept.moved and kept.prompt == (1,) and kept.reason == "never: best candidate 4/4 right vs current 0/4"


def test_every_variant_and_acceptance_rule_a_user_can_name_has_its_class():
    hints = typing.get_type_hints(RunSettings)
    assert set(typing.get_args(hints["variant"])) == set(VARIANTS)
    assert set(typing.get_args(hints["acceptance"])) == set(ACCEPTANCE)
    assert all(rule.name == name for name, rule in ACCEPTANCE.items())
