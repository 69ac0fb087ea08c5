"""One step of the search, top to bottom: offer -> race -> decide.

    offered, notes = offer(sess, state, variant.proposers(settings))  # every source's candidates
    raced = variant.race(sess, state, offered)                         # what may race, raced on the pool
    decision = variant.decide(sess, state, raced.evaluated)            # the acceptance rule over the race

The graph runs a step as nodes, so a person can pause, inspect and steer between any two of them:
``propose`` and ``refine`` call :func:`offer` (with ``retrieve`` before them, offering the retrieved
prompt the same way), ``evaluate`` calls :meth:`Variant.race` and ``select`` calls
:meth:`Variant.decide`; ``approve``, ``record`` and ``advance`` then apply the decision. The race
hands on a :class:`Raced`, the acceptance rule a :class:`~gradprompt.nodes.decisions.Decision`, and
the state records each candidate and the decision as JSON. The seams where a step can vary are
small Protocols: a candidate source is a :class:`~gradprompt.nodes.proposers.Proposer`, the
variant (the official race, or the paper's unraced gradient argmax) a :class:`Variant`, the
acceptance rule an :class:`~gradprompt.nodes.decisions.AcceptanceRule`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gradprompt.nodes.decisions import ACCEPTANCE, Contender, RaceResult, SelectionConfig, accept, discordant, race
from gradprompt.nodes.edit_limit import word_distance
from gradprompt.nodes.greater import Rollout
from gradprompt.nodes.prompt_ids import PromptIds
from gradprompt.nodes.proposers import PhraseEdits, Proposer, StepView, gradient_proposer
from gradprompt.nodes.session import Session, rollouts, scored, selection_pool

WHOLE_RANKING = 1 << 30


# ----- offer ---------------------------------------------------------------------------------------
def offer(sess: Session, state: dict, proposers: Sequence[Proposer]) -> tuple[list[dict], dict]:
    """Each proposer's candidates, as the state records them, and what the proposers noted."""
    view = StepView(sess, state)
    return [c.to_state() for p in proposers for c in p.propose(view)], view.notes


# ----- race ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Raced:
    """The step's candidates after the race: each with its results and how far it got."""

    evaluated: list[dict]
    rejected: dict[str, int] = field(default_factory=dict)  # dropped before racing, by reason
    slices: list[int] | None = None  # the pool slice ends the race compared at (None: no race)


def pool_rollout(sess: Session, prompt) -> Rollout:
    """A prompt's results on the whole pool (rolled out only where the cache lacks them)."""
    return rollouts(sess, selection_pool(sess), [tuple(prompt)])[0]


def race_candidates(sess: Session, prompts: list[PromptIds], current: Rollout, examples=None) -> RaceResult:
    """Race ``prompts`` against ``current`` on ``examples`` (the selection pool unless given: the
    baselines and a warm start race the same way), each slice in one batched, cached decode, with
    the current prompt's reasoning as every candidate's draft."""
    pool = selection_pool(sess) if examples is None else examples

    def evaluate_slice(alive: list[PromptIds], start: int, stop: int):
        rolled = rollouts(sess, pool[start:stop], alive, drafts=current.reasonings[start:stop])
        return [r.outcomes for r in rolled]

    return race(prompts, current.outcomes, evaluate_slice, SelectionConfig.from_settings(sess.settings))


def held_before(state: dict) -> set[PromptIds]:
    """Every prompt this run has held: its start and each step's current and accepted prompt. A
    step that moved back to one would undo an earlier step and redo it, cycling without end."""
    held = {tuple(state["prompt"])}
    if state.get("baseline"):
        held.add(tuple(state["baseline"]["prompt"]))
    for h in state.get("history", []):
        held.update((tuple(h["prompt"]), tuple(h["accepted"]["prompt"])))
    return held


def not_held(state: dict, candidates: list[dict]) -> tuple[list[dict], int]:
    """Candidates that are not a prompt the run has held, and how many were."""
    held = held_before(state)
    kept = [c for c in candidates if tuple(c["prompt"]) not in held]
    return kept, len(candidates) - len(kept)


def within_limit(sess: Session, state: dict, candidates: list[dict]) -> tuple[list[dict], int]:
    """Distinct candidates within the step's word edit limit of the current prompt, and how many
    were over it."""
    limit = state.get("edit_limit")
    kept: dict[tuple, dict] = {}
    over = 0
    for c in candidates:
        key = tuple(c["prompt"])
        if key in kept:
            continue
        if limit is not None and word_distance(sess.rt.decode(c["prompt"]), state["prompt_text"]) > limit:
            over += 1
            continue
        kept[key] = c
    return list(kept.values()), over


def _entry(sess: Session, candidate: dict, rolled: Rollout | None, step: int, **more) -> dict:
    extra = {k: v for k, v in candidate.items() if k not in ("prompt", "text", "source", "step")}
    return scored(sess, candidate["prompt"], candidate["source"], rolled, step=step, **extra, **more)


def raced_entry(sess: Session, candidate: dict, contender: Contender, current: Rollout, pool_size: int, step: int):
    """A candidate as the state records it: its results on the examples it ran, how far it got
    and why it stopped, and its paired counts against the current prompt on those examples."""
    rolled = Rollout.from_outcomes(contender.prompt, contender.outcomes)
    only_new, only_old = discordant(contender.correct, current.correct[: contender.evaluated])
    return _entry(
        sess,
        candidate,
        rolled,
        step,
        finished=contender.evaluated == pool_size and not contender.stopped,
        stopped=contender.stopped or ("" if contender.evaluated == pool_size else "not reached"),
        only_new_right=only_new,
        only_current_right=only_old,
    )


# ----- the variants: race and decide ---------------------------------------------------------------
class Variant(Protocol):
    """Which of the step's own sources offer candidates, which race they run, and how the
    decision is taken."""

    def proposers(self, settings) -> list[Proposer]: ...

    def race(self, sess: Session, state: dict, offered: list[dict]) -> Raced: ...

    def decide(self, sess: Session, state: dict, evaluated: list[dict]) -> dict: ...


class Official:
    """Every source's candidates race the current prompt on the selection pool; the run's
    acceptance rule takes the decision among those that finished."""

    def proposers(self, settings) -> list[Proposer]:
        return [gradient_proposer(settings, settings.n_evaluate), PhraseEdits(settings.phrase_edits)]

    def race(self, sess: Session, state: dict, offered: list[dict]) -> Raced:
        candidates, over = within_limit(sess, state, offered)
        candidates = [c for c in candidates if list(c["prompt"]) != list(state["prompt"])]
        candidates, seen = not_held(state, candidates)
        current = pool_rollout(sess, state["prompt"])
        result = race_candidates(sess, [tuple(c["prompt"]) for c in candidates], current)
        by_prompt = {c.prompt: c for c in result.contenders}
        evaluated = [
            raced_entry(sess, c, by_prompt[tuple(c["prompt"])], current, result.pool_size, state["step"])
            for c in candidates
        ]
        return Raced(evaluated, {"over_limit": over, "held_before": seen}, result.slices)

    def decide(self, sess: Session, state: dict, evaluated: list[dict]) -> dict:
        pool = selection_pool(sess)
        base = pool_rollout(sess, state["prompt"])
        contenders = []
        for c in evaluated:
            got = rollouts(sess, pool[: c["examples"]], [c["prompt"]])[0]  # cached by the race
            contenders.append(Contender(tuple(c["prompt"]), got.outcomes, "" if c["finished"] else c["stopped"]))
        rule = ACCEPTANCE[sess.settings.acceptance]
        decision = accept(tuple(state["prompt"]), base.outcomes, RaceResult(contenders, len(pool), []), rule)
        if not decision.moved:
            return {**state["current"], "reason": decision.reason}
        chosen = next(c for c in evaluated if tuple(c["prompt"]) == decision.prompt)
        return {**chosen, "reason": decision.reason}


class Paper:
    """GReaTer as published: the gradient's top candidate not held before, taken unraced."""

    def proposers(self, settings) -> list[Proposer]:
        # token moves scan the whole gradient ranking for an edit not held before
        return [gradient_proposer(settings, WHOLE_RANKING if settings.moves == "tokens" else settings.n_evaluate)]

    def race(self, sess: Session, state: dict, offered: list[dict]) -> Raced:
        ranked = (c for c in offered if c["source"] == "gradient" and c.get("gradient") is not None)
        fresh, seen = not_held(state, sorted(ranked, key=lambda c: c["gradient"]))
        return Raced([_entry(sess, c, None, state["step"]) for c in fresh[:1]], {"held_before": seen})

    def decide(self, sess: Session, state: dict, evaluated: list[dict]) -> dict:
        if not evaluated:
            return {**state["current"], "reason": "no candidate"}
        return {**evaluated[0], "reason": "paper variant: the gradient argmax, unevaluated"}


VARIANTS: dict[str, Variant] = {"official": Official(), "paper": Paper()}


def variant_of(sess: Session) -> Variant:
    return VARIANTS[sess.settings.variant]
