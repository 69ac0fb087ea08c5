"""The graph's state: plain JSON (token ids, strings, numbers), so every checkpoint is a complete,
readable record of the run and any process can resume it.

Bulky per-example data (the current prompt's reasoning on the minibatch) lives only for the step
that needs it and is bounded by ``batch_size x max_new_tokens`` token ids.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Scored(TypedDict, total=False):
    """A prompt with what is known of it."""

    prompt: list[int]
    text: str
    source: str  # current | gradient | retrieval | refinement | human
    token: int | None  # the token placed at the edited position, for gradient candidates
    gradient: float | None  # the one-hot gradient that ranked it (lower is better)
    accuracy: float | None  # on the step's minibatch
    nll: float | None  # mean prompt NLL
    score: float | None  # error rate + score_nll_weight * nll (lower is better)
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
    timings: dict[str, float]


class State(TypedDict, total=False):
    run_id: str
    settings: dict[str, Any]  # RunSettings.model_dump(): the whole configuration of the run
    step: int  # steps finished
    prompt: list[int]  # current prompt, as token ids end to end
    prompt_text: str  # for people only; never re-encoded
    position: int  # prompt position edited by the next step (== len(prompt) means append)
    baseline: Scored  # the prompt the search started from (the initial one, or a warm start)
    warm_start: dict[str, Any]  # prompts from similar tasks considered on dev, and which won
    # per-step working data
    edit_limit: int  # words one update may change this step
    retrieved: list[dict[str, Any]]  # similar past prompts with scores, current prompt first
    extra_tokens: list[int]  # tokens at the edited position in retrieved prompts
    extra_candidates: list[dict[str, Any]]  # whole prompts from retrieval and refinement
    rejected: dict[str, int]  # candidates dropped this step: over_limit, malformed
    refine_reply: str  # the chat model's reply, bounded
    reasonings: list[list[int]]
    current: Scored
    proposal: dict[str, Any]
    evaluated: list[Scored]
    decision: Scored
    timings: dict[str, float]
    # across steps
    history: list[StepRecord]
    best: list[Scored]  # the keep_best lowest minibatch scores seen
    stale: int  # steps since the best score improved
    done: bool
    stop_reason: str
    final: dict[str, Any]  # dev/test scores of the baseline and the chosen prompt
