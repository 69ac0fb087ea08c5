"""evaluate: race the step's candidate prompts against the current one on the selection pool
(official variant), or pass the gradient's top candidate through unevaluated (paper variant).
Every candidate from every source goes through here; the racing rule is in :mod:`nodes.decisions`."""

from __future__ import annotations

from langgraph.runtime import Runtime

from gradprompt.nodes.context import Context
from gradprompt.nodes.decisions import SelectionConfig, discordant, race
from gradprompt.nodes.edit_limit import word_distance
from gradprompt.nodes.greater import Rollout
from gradprompt.nodes.session import rollouts, scored, selection_pool
from gradprompt.nodes.state import State


def pool_rollout(sess, prompt) -> Rollout:
    """A prompt's results on the whole pool (rolled out only where the cache lacks them)."""
    return rollouts(sess, selection_pool(sess), [tuple(prompt)])[0]


def race_candidates(sess, prompts: list[tuple[int, ...]], current: Rollout, examples=None):
    """Race ``prompts`` against ``current`` on ``examples`` (the selection pool unless given: the
    baselines and a warm start race the same way), each slice in one batched, cached decode, with
    the current prompt's reasoning as every candidate's draft."""
    pool = selection_pool(sess) if examples is None else examples

    def evaluate_slice(alive: list[tuple[int, ...]], start: int, stop: int):
        rolled = rollouts(sess, pool[start:stop], alive, drafts=current.reasonings[start:stop])
        return [r.outcomes for r in rolled]

    return race(prompts, current.outcomes, evaluate_slice, SelectionConfig.from_settings(sess.settings))


def raced_entry(sess, candidate: dict, contender, current: Rollout, pool_size: int, step: int) -> dict:
    """A candidate as the state records it: its results on the examples it ran, how far it got
    and why it stopped, and its paired counts against the current prompt on those examples."""
    rolled = Rollout.from_outcomes(contender.prompt, contender.outcomes)
    only_new, only_old = discordant(contender.correct, current.correct[: contender.evaluated])
    return _scored(
        sess,
        candidate,
        rolled,
        step,
        finished=contender.evaluated == pool_size and not contender.stopped,
        stopped=contender.stopped or ("" if contender.evaluated == pool_size else "not reached"),
        only_new_right=only_new,
        only_current_right=only_old,
    )


def held_before(state: dict) -> set[tuple[int, ...]]:
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


def evaluate(state: State, runtime: Runtime[Context]) -> dict:
    sess = runtime.context.session
    st = sess.settings
    rejected = dict(state.get("rejected") or {})
    offered = list(state.get("offered", []))
    if st.variant == "paper":
        ranked = (c for c in offered if c["source"] == "gradient" and c.get("gradient") is not None)
        gradient = sorted(ranked, key=lambda c: c["gradient"])
        fresh, seen = not_held(state, gradient)
        rejected["held_before"] = rejected.get("held_before", 0) + seen
        return {"evaluated": [_scored(sess, c, None, state["step"]) for c in fresh[:1]], "rejected": rejected}
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
    rejected["over_limit"] = rejected.get("over_limit", 0) + over
    rejected["held_before"] = rejected.get("held_before", 0) + seen
    return {"evaluated": evaluated, "rejected": rejected, "race_slices": result.slices}


def within_limit(sess, state: dict, candidates: list[dict]) -> tuple[list[dict], int]:
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


def _scored(sess, candidate: dict, rolled: Rollout | None, step: int, **more) -> dict:
    extra = {k: v for k, v in candidate.items() if k not in ("prompt", "text", "source", "step")}
    return scored(sess, candidate["prompt"], candidate["source"], rolled, step=step, **extra, **more)
