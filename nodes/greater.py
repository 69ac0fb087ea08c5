"""The GReaTer step as three calls the graph nodes make: roll out prompts, propose token edits
by gradient, choose among evaluated candidates, then move the edit position.

Prompts are token-id tuples throughout; text is produced only for people to read.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from nodes.runtime.candidates import example_groups, propose_candidates
from nodes.runtime.decoding import DecodeJob
from nodes.runtime.runtime import Runtime
from nodes.runtime.scoring import ForcedRow, forced_row, window_gradients
from nodes.settings import StepSettings
from nodes.tasks.answer_types import AnswerFormat
from nodes.tasks.task import Example

PromptIds = tuple[int, ...]


@dataclass
class Rollout:
    """A prompt's reasoning and answers on a list of examples."""

    prompt_ids: PromptIds
    reasonings: list[tuple[int, ...]]
    answers: list[str]
    correct: list[bool]
    nll: float

    @property
    def error_rate(self) -> float:
        return 1.0 - sum(self.correct) / len(self.correct) if self.correct else 1.0

    @property
    def accuracy(self) -> float:
        return 1.0 - self.error_rate

    def score(self, nll_weight: float) -> float:
        """Lower is better: error rate plus a small pull towards readable prompts."""
        return self.error_rate + nll_weight * self.nll


def rollout(
    rt: Runtime,
    fmt: AnswerFormat,
    examples: Sequence[Example],
    prompts: Sequence[PromptIds],
    max_new_tokens: int,
    drafts: Sequence[Sequence[int]] | None = None,
    label: str | None = None,
) -> list[Rollout]:
    """Reason and answer with every prompt on every example in one batched decode across all
    prompts x examples. ``drafts`` (one reasoning per example, usually the current prompt's)
    speed up candidates whose reasoning stays close to it without changing the result. ``label``
    shows a progress bar (for long evaluations over a split)."""
    questions = [e.question for e in examples]
    extractors = [rt.extractor_ids(fmt.extractor(q)) for q in questions]
    guesses = list(drafts) if drafts is not None else [()] * len(examples)
    jobs = [
        DecodeJob(c.ids, c.prompt, x, tuple(d))
        for p in prompts
        for c, x, d in zip(rt.contexts(questions, p), extractors, guesses, strict=True)
    ]
    decoded = rt.reason_and_answer(jobs, max_new_tokens, fmt.max_answer_tokens, label=label)
    texts = [rt.tokenizer.decode(d.answer, skip_special_tokens=True) for d in decoded]
    out, n = [], len(examples)
    for i, p in enumerate(prompts):
        sl = slice(i * n, (i + 1) * n)
        correct = [fmt.is_correct(t, e.answer, e.question) for t, e in zip(texts[sl], examples, strict=True)]
        nll = sum(d.prompt_nll for d in decoded[sl]) / max(n, 1)
        out.append(Rollout(tuple(p), [d.reasoning for d in decoded[sl]], texts[sl], correct, nll))
    return out


@dataclass
class Proposal:
    """Gradient-ranked edits at one position, or at a window of consecutive positions."""

    position: int
    current_token: int
    base_prompt: PromptIds  # the prompt the gradient was taken at (with a placeholder when growing)
    candidates: list[int]
    gradients: list[float]
    ranked: list[int] = field(default_factory=list)  # candidates, most negative gradient first
    # further positions of a multi-position edit: (position, candidates, gradients, ranked)
    more: list[tuple[int, list[int], list[float], list[int]]] = field(default_factory=list)

    @property
    def positions(self) -> list[int]:
        return [self.position, *(m[0] for m in self.more)]

    def prompt_with(self, token: int) -> PromptIds:
        p = list(self.base_prompt)
        p[self.position] = token
        return tuple(p)

    def top_prompts(self, n: int) -> list[PromptIds]:
        """The ``n`` best edits. With several positions the j-th edit puts each position's j-th
        ranked token in place (a coordinate update on the whole window at once)."""
        out = []
        for j in range(min(n, len(self.ranked))):
            p = list(self.base_prompt)
            p[self.position] = self.ranked[j]
            for pos, _, _, ranked in self.more:
                p[pos] = ranked[min(j, len(ranked) - 1)]
            out.append(tuple(p))
        return out


def forced_rows(
    rt: Runtime, fmt: AnswerFormat, examples: Sequence[Example], prompt: PromptIds, reasonings: Sequence[Sequence[int]]
) -> list[ForcedRow]:
    """The teacher-forced ``question+prompt | reasoning | extractor | gold answer`` of each example."""
    rows = []
    for ex, reasoning in zip(examples, reasonings, strict=True):
        ctx = rt.layout.encode(ex.question, prompt)
        extractor = rt.extractor_ids(fmt.extractor(ex.question))
        rows.append(forced_row(ctx.ids, ctx.prompt, reasoning, extractor, rt.layout.text_ids(fmt.target(ex.answer))))
    return rows


def _next_token_logprobs(rt: Runtime, examples: Sequence[Example], prompt: PromptIds) -> torch.Tensor:
    """(B, V) log-probs of the token right after the prompt, for growing it by one token."""
    from nodes.runtime.batching import pad

    contexts = rt.contexts([e.question for e in examples], prompt)
    ids, mask = pad([c.ids for c in contexts], rt.pad_id, "right", rt.device)
    keep = torch.zeros_like(ids, dtype=torch.bool)
    for b, c in enumerate(contexts):
        keep[b, c.prompt[1] - 1] = True
    with torch.no_grad():
        logits = rt.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False).logits
    return torch.log_softmax(logits.float().reshape(len(contexts), -1), dim=-1)


def propose(
    rt: Runtime,
    fmt: AnswerFormat,
    settings: StepSettings,
    examples: Sequence[Example],
    prompt: PromptIds,
    position: int,
    reasonings: Sequence[Sequence[int]],
    rng: random.Random,
    extra_tokens: Sequence[int] = (),
    n_positions: int = 1,
) -> Proposal:
    """Candidates from the model's own next-token distribution, ranked by the gradient of the
    loss over its reasoning: one forward and one backward over the whole minibatch (plus a short
    no-grad forward when the prompt grows, to pick the placeholder the gradient is taken at).

    ``n_positions`` > 1 proposes edits of that many consecutive positions from the same forward
    and backward (not when growing the prompt, which adds one token)."""
    groups = example_groups(len(examples), settings.group_size, settings.n_groups, rng)
    if position == len(prompt):
        logp = _next_token_logprobs(rt, examples, prompt)
        usable = rt.allowed_tokens[: logp.shape[1]]
        placeholder = int(logp.sum(0).masked_fill(~usable, float("-inf")).argmax())
        base = (*tuple(prompt), placeholder)
    else:
        base = tuple(prompt)
    rows = forced_rows(rt, fmt, examples, base, reasonings)
    positions = [position] if position == len(prompt) else list(range(position, min(position + n_positions, len(base))))
    grads = window_gradients(rt, rows, positions, temperature=settings.temperature, nll_weight=settings.grad_nll_weight)
    ranked_at = []
    for i, (pos, grad) in enumerate(zip(positions, grads, strict=True)):
        banned = [base[pos - 1]] if pos > 0 else []
        cands = propose_candidates(
            grad.position_logprobs,
            rt.allowed_tokens,
            banned,
            top_k=settings.top_k,
            groups=groups,
            min_count=2 * settings.n_evaluate,
        )
        for tok in [*(extra_tokens if i == 0 else ()), base[pos]]:
            if tok not in cands and tok not in banned:
                cands.append(int(tok))
        values = grad.candidate_gradients(rt.embedding_matrix, torch.as_tensor(cands, device=rt.device)).tolist()
        ranked = [c for _, c in sorted(zip(values, cands, strict=True), key=lambda vc: vc[0])]
        ranked_at.append((pos, cands, values, ranked))
    (pos0, cands0, values0, ranked0), *more = ranked_at
    return Proposal(pos0, base[pos0], base, cands0, values0, ranked0, more)


@dataclass
class Choice:
    prompt: PromptIds
    evaluated: list[tuple[PromptIds, Rollout | None]]


def evaluate_prompts(
    rt: Runtime,
    fmt: AnswerFormat,
    settings: StepSettings,
    examples: Sequence[Example],
    prompts: Sequence[PromptIds],
    current: Rollout,
) -> list[tuple[PromptIds, Rollout]]:
    """Regenerate reasoning and answers with each prompt on the minibatch, all in one batched
    decode. The current prompt's rollout is reused, and its reasoning drafts the others'."""
    unique = list(dict.fromkeys(tuple(p) for p in prompts))
    fresh = [p for p in unique if p != current.prompt_ids]
    rolled = dict(
        zip(fresh, rollout(rt, fmt, examples, fresh, settings.max_new_tokens, current.reasonings), strict=True)
    )
    rolled[current.prompt_ids] = current
    return [(tuple(p), rolled[tuple(p)]) for p in prompts]


def choose(
    rt: Runtime,
    fmt: AnswerFormat,
    settings: StepSettings,
    examples: Sequence[Example],
    proposal: Proposal,
    current: Rollout,
) -> Choice:
    """Official variant: regenerate reasoning with the top candidates and keep the best score.
    Paper variant: the gradient argmax, unevaluated."""
    top = proposal.top_prompts(settings.n_evaluate)
    if settings.variant == "paper":
        return Choice(top[0], [(p, None) for p in top[:1]])
    evaluated = evaluate_prompts(rt, fmt, settings, examples, top, current)
    best = min(evaluated, key=lambda pr: pr[1].score(settings.score_nll_weight))[0]
    return Choice(best, evaluated)


def next_position(rt: Runtime, prompt: PromptIds, position: int) -> int:
    """Left-to-right sweep; past the end, wrap to the start if the prompt ends a sentence,
    otherwise grow it by one token (position == len(prompt) means 'append')."""
    nxt = position + 1
    if nxt < len(prompt):
        return nxt
    if prompt and rt.ends_sentence(prompt[-1]):
        return 0
    return len(prompt)


def minibatch(train: Sequence[Example], size: int, seed: int, step: int) -> list[Example]:
    """The step's training examples: a function of (seed, step) alone, so a resumed run draws
    the same minibatch as an uninterrupted one."""
    if len(train) <= size:
        return list(train)
    return random.Random(f"{seed}:{step}").sample(list(train), size)
