"""The GReaTer step's model work as the graph nodes call it: roll out prompts (through the run's
rollout cache), propose token edits by gradient, move the edit position. Which prompt wins is
decided in :mod:`nodes.decisions`.

Prompts are token-id tuples throughout; text is produced only for people to read.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from gradprompt.nodes.decisions import Outcome
from gradprompt.nodes.prompt_ids import PromptIds
from gradprompt.nodes.rollout_cache import RolloutCache
from gradprompt.nodes.runtime.candidates import example_groups, propose_candidates
from gradprompt.nodes.runtime.decoding import DecodeJob
from gradprompt.nodes.runtime.model_runtime import ModelRuntime
from gradprompt.nodes.runtime.scoring import ForcedRow, forced_row, window_gradients
from gradprompt.nodes.settings import StepSettings
from gradprompt.nodes.tasks.answer_types import AnswerFormat
from gradprompt.nodes.tasks.readout import Readout, readout_of
from gradprompt.nodes.tasks.task import Example

Answers = Readout | AnswerFormat  # an answer format alone is read the default way (see readout_of)


def as_readout(answers: Answers, max_new_tokens: int) -> Readout:
    return answers if isinstance(answers, Readout) else readout_of(answers, max_new_tokens=max_new_tokens)


@dataclass
class Rollout:
    """A prompt's reasoning and answers on a list of examples."""

    prompt_ids: PromptIds
    reasonings: list[tuple[int, ...]]
    answers: list[str]
    correct: list[bool]
    nll: float
    gold_logprobs: list[float] = field(default_factory=list)  # per example
    nlls: list[float] = field(default_factory=list)  # prompt NLL per example
    margins: list[float | None] = field(default_factory=list)  # gold-answer margin per example (closed sets)

    @property
    def error_rate(self) -> float:
        return 1.0 - sum(self.correct) / len(self.correct) if self.correct else 1.0

    @property
    def accuracy(self) -> float:
        return 1.0 - self.error_rate

    @property
    def gold_logprob(self) -> float:
        """Mean log-probability of the gold answers: the continuous signal that breaks ties."""
        return sum(self.gold_logprobs) / len(self.gold_logprobs) if self.gold_logprobs else 0.0

    def score(self, nll_weight: float) -> float:
        """Lower is better: error rate plus a small pull towards readable prompts."""
        return self.error_rate + nll_weight * self.nll

    @property
    def outcomes(self) -> list[Outcome]:
        lps = self.gold_logprobs or [0.0] * len(self.correct)
        nlls = self.nlls or [self.nll] * len(self.correct)
        return [
            Outcome(c, lp, nll, tuple(r), a, m)
            for c, lp, nll, r, a, m in zip(
                self.correct, lps, nlls, self.reasonings, self.answers, self.margins or [None] * len(lps), strict=True
            )
        ]

    @classmethod
    def from_outcomes(cls, prompt: PromptIds, outcomes: Sequence[Outcome]) -> Rollout:
        n = max(len(outcomes), 1)
        return cls(
            tuple(prompt),
            [o.reasoning for o in outcomes],
            [o.answer for o in outcomes],
            [o.correct for o in outcomes],
            sum(o.nll for o in outcomes) / n,
            [o.gold_logprob for o in outcomes],
            [o.nll for o in outcomes],
            [o.margin for o in outcomes],
        )


def decode_jobs(
    rt: ModelRuntime, readout: Readout, pairs: Sequence[tuple[PromptIds, Example, Sequence[int]]]
) -> list[DecodeJob]:
    """The decode of each (prompt, example, draft): its chat context, the readout's extractor, the
    gold answer's tokens and, for a closed answer set, every allowed answer's tokens."""
    return [decode_job(rt, readout, prompt, ex.question, ex.answer, draft) for prompt, ex, draft in pairs]


def decode_job(
    rt: ModelRuntime, readout: Readout, prompt: PromptIds, question: str, gold: str | None, draft: Sequence[int] = ()
) -> DecodeJob:
    """One question's decode with ``prompt``, read the run's way; without a gold answer (a new
    question) only its log-probability is missing, never anything the answer depends on."""
    ctx = rt.layout.encode(question, prompt)
    extractor = rt.extractor_ids(readout.extractor(question))
    target = rt.extractor_ids(readout.target(gold)) if gold is not None else ()
    options = tuple(rt.extractor_ids(text) for _, text in readout.options(question))
    return DecodeJob(ctx.ids, ctx.prompt, extractor, tuple(draft), tuple(target), options)


def rollout_pairs(
    rt: ModelRuntime,
    answers: Answers,
    pairs: Sequence[tuple[PromptIds, Example, Sequence[int]]],
    max_new_tokens: int,
    label: str | None = None,
) -> list[Outcome]:
    """Reason and answer for every (prompt, example, draft) in one batched decode. A draft (usually
    the current prompt's reasoning on that example) speeds up a candidate whose reasoning stays
    close to it without changing the result; the gold answer's log-probability comes from the same
    decode, after the same extractor the answer is read at. ``label`` shows a progress bar (for
    long evaluations over a split)."""
    readout = as_readout(answers, max_new_tokens)
    jobs = decode_jobs(rt, readout, pairs)
    decoded = rt.reason_and_answer(jobs, max_new_tokens, readout.fmt.max_answer_tokens, label=label)
    out = []
    for (_, ex, _), job, d in zip(pairs, jobs, decoded, strict=True):
        text = rt.tokenizer.decode(d.answer, skip_special_tokens=True)
        correct = readout.is_correct(text, ex.answer, ex.question)
        out.append(Outcome(correct, d.gold_logprob, d.prompt_nll, d.reasoning, text, gold_margin(job, d)))
    return out


def gold_margin(job: DecodeJob, decoded) -> float | None:
    """log p(gold) minus the best other allowed answer's log p (RLPrompt's reward): positive when
    the answer read is right, and by how much; None when the answer is generated."""
    lps = decoded.option_logprobs
    if not lps or job.gold not in job.options or len(lps) < 2:
        return None
    g = job.options.index(job.gold)
    return float(lps[g] - max(lp for i, lp in enumerate(lps) if i != g))


def rollout(
    rt: ModelRuntime,
    answers: Answers,
    examples: Sequence[Example],
    prompts: Sequence[PromptIds],
    max_new_tokens: int,
    drafts: Sequence[Sequence[int]] | None = None,
    label: str | None = None,
    cache: RolloutCache | None = None,
) -> list[Rollout]:
    """Every prompt on every example. With a ``cache``, only the (prompt, example) pairs the run has
    not rolled out yet reach the model and the new results go to the cache; what is rolled out goes
    through batched decodes (see :func:`rollout_pairs`).

    Without ``drafts``, several prompts are drafted from the first one's reasoning (the baseline
    or current best, which the others are mostly edits of): it is rolled out first, the rest
    after it. Drafts change the time taken, never the results."""
    prompts = [tuple(p) for p in prompts]
    unique = list(dict.fromkeys(prompts))
    known = {p: cache.get(p, examples) if cache is not None else [None] * len(examples) for p in unique}

    def fill(todo: Sequence[PromptIds], guesses: Sequence[Sequence[int]]) -> None:
        missing = [(p, i) for p in todo for i, o in enumerate(known[p]) if o is None]
        if not missing:
            return
        fresh = rollout_pairs(rt, answers, [(p, examples[i], guesses[i]) for p, i in missing], max_new_tokens, label)
        if cache is not None:
            cache.put([(p, examples[i], o) for (p, i), o in zip(missing, fresh, strict=True)])
        for (p, i), o in zip(missing, fresh, strict=True):
            known[p][i] = o

    if drafts is None and len(unique) > 1 and any(o is None for p in unique[1:] for o in known[p]):
        fill(unique[:1], [()] * len(examples))
        drafts = [o.reasoning for o in known[unique[0]]]
    fill(unique, list(drafts) if drafts is not None else [()] * len(examples))
    return [Rollout.from_outcomes(p, known[p]) for p in prompts]


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
    rt: ModelRuntime,
    answers: Answers,
    examples: Sequence[Example],
    prompt: PromptIds,
    reasonings: Sequence[Sequence[int]],
) -> list[ForcedRow]:
    """The teacher-forced ``question+prompt | reasoning | extractor | gold answer`` of each example,
    with the extractor the answer is read at (no reasoning at all in direct mode)."""
    readout = as_readout(answers, 1)  # pass a Readout for direct answers
    rows = []
    for ex, reasoning in zip(examples, reasonings, strict=True):
        ctx = rt.layout.encode(ex.question, prompt)
        extractor = rt.extractor_ids(readout.extractor(ex.question))
        gold = rt.extractor_ids(readout.target(ex.answer))
        rows.append(forced_row(ctx.ids, ctx.prompt, reasoning, extractor, gold))
    return rows


def _next_token_logprobs(rt: ModelRuntime, examples: Sequence[Example], prompt: PromptIds) -> torch.Tensor:
    """(B, V) log-probs of the token right after the prompt, for growing it by one token."""
    from gradprompt.nodes.runtime.batching import pad

    contexts = rt.contexts([e.question for e in examples], prompt)
    ids, mask = pad([c.ids for c in contexts], rt.pad_id, "right", rt.device)
    keep = torch.zeros_like(ids, dtype=torch.bool)
    for b, c in enumerate(contexts):
        keep[b, c.prompt[1] - 1] = True
    with torch.no_grad():
        logits = rt.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False).logits
    return torch.log_softmax(logits.float().reshape(len(contexts), -1), dim=-1)


def propose(
    rt: ModelRuntime,
    answers: Answers,
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
    rows = forced_rows(rt, as_readout(answers, settings.max_new_tokens), examples, base, reasonings)
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


def next_position(rt: ModelRuntime, prompt: PromptIds, position: int) -> int:
    """Left-to-right sweep; past the end, wrap to the start if the prompt ends a sentence,
    otherwise grow it by one token (position == len(prompt) means 'append')."""
    nxt = position + 1
    if nxt < len(prompt):
        return nxt
    if prompt and rt.ends_sentence(prompt[-1]):
        return 0
    return len(prompt)


def pool_order(pool: Sequence[Example], seed: int) -> list[Example]:
    """The selection pool in the one order every race reads it in (a function of the seed), so
    that the first slices are a fair sample of the pool and every prompt is compared on the same
    examples."""
    order = list(pool)
    random.Random(f"{seed}:pool").shuffle(order)
    return order


def gradient_batch(pool: Sequence[Example], size: int, seed: int, step: int) -> list[int]:
    """Positions in the pool of the examples a step takes its gradient on: a function of (seed,
    step) alone, so a resumed run takes the same ones."""
    if len(pool) <= size:
        return list(range(len(pool)))
    return sorted(random.Random(f"{seed}:{step}").sample(range(len(pool)), size))
