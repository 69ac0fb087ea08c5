"""The graph's state: plain JSON (token ids, strings, numbers), so every checkpoint is a complete,
readable record of the run and any process can resume it.

Bulky per-example data (every rollout's reasoning and answer) lives in the run's rollout cache in
the graph's store, not here; the state keeps per-prompt scores and the current prompt's per-example
right/wrong on the selection pool.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import (
    TypedDict,  # pydantic reads the schema (LangGraph server, Studio) only from this one on Python < 3.12
)


class Scored(TypedDict, total=False):
    """A prompt with what is known of it."""

    prompt: list[int]
    text: str
    source: str  # current | initial | baseline | gradient | phrase | retrieval | refinement | human
    move: str  # the edit in words, for candidates ("replace 'Classify' with 'Label'")
    known_words: float  # readability: share of the prompt's words that are English words
    token: int | None  # the token placed at the edited position, for gradient candidates
    gradient: float | None  # the one-hot gradient that ranked it (lower is better)
    accuracy: float | None  # on the first ``examples`` examples of the selection pool
    right: int | None  # examples answered right
    examples: int | None  # pool examples it was evaluated on (the whole pool when ``finished``)
    gold_logprob: float | None  # mean log-probability of the gold answers (the tie-breaker)
    nll: float | None  # mean prompt NLL
    score: float | None  # error rate + score_nll_weight * nll (lower is better), for the trajectory
    finished: bool  # ran the whole race
    stopped: str  # why it left the race early
    only_new_right: int  # paired with the current prompt: examples only this one got right
    only_current_right: int  # ... and examples only the current prompt got right
    reason: str  # (decision) why the step moved or stayed
    step: int


class StepRecord(TypedDict, total=False):
    """One finished step, as ``runs show --history`` prints it."""

    step: int
    position: int
    prompt: list[int]
    prompt_text: str
    current: Scored
    candidates: list[Scored]
    accepted: Scored
    changed: bool
    variant: str
    edit_limit: int
    retrieved: list[dict[str, Any]]
    rejected: dict[str, int]
    sources: dict[str, dict[str, int]]  # per source: offered, raced, finished the pool, accepted
    refine_error: str
    timings: dict[str, float]


class State(TypedDict, total=False):
    run_id: str
    settings: dict[str, Any]  # RunSettings.model_dump(): the whole configuration of the run
    step: int  # steps finished
    prompt: list[int]  # current prompt, as token ids end to end
    prompt_text: str  # for people only; never re-encoded
    position: int  # word slot (word moves) or token position (token moves) the next step edits
    baseline: Scored  # the user's initial prompt: what the final choice must beat
    start: dict[str, Any]  # where the search started and why (the best baseline on the pool)
    baselines: list[Scored]  # the simple prompts raced on the pool before step 0
    warm_start: dict[str, Any]  # prompts from similar tasks considered on dev, and which won
    # per-step working data
    edit_limit: int  # words one update may change this step
    retrieved: list[dict[str, Any]]  # similar past prompts with scores, current prompt first
    extra_tokens: list[int]  # tokens at the edited position in retrieved prompts
    offered: list[dict[str, Any]]  # this step's candidates from every source (nodes.proposers)
    word_proposal: dict[str, Any]  # the slot edited and the first tokens the top-k rule allowed
    rejected: dict[str, int]  # candidates dropped this step: over_limit, malformed, held_before
    refine_reply: str  # the chat model's reply, bounded
    refine_misses: int  # steps in a row the chat model offered no usable prompt
    refine_error: str  # why the chat model gave no reply this step ("" when it replied)
    race_slices: list[int]  # the pool slice ends this step's race compared at
    current: Scored
    proposal: dict[str, Any]
    evaluated: list[Scored]
    decision: Scored
    timings: dict[str, float]
    # across steps
    history: list[StepRecord]
    best: list[Scored]  # the keep_best prompts scored on the whole pool, best first
    stale: int  # steps since the best pool accuracy rose
    deleted_phrases: list[list[int]]  # phrases accepted deletions removed, which phrase edits may add back
    spent: dict[str, Any]  # seconds in the run's nodes and rollouts generated, over all its processes
    done: bool
    stop_reason: str
    final: dict[str, Any]  # dev/test scores of the baseline and the chosen prompt
