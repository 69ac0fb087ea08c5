"""Reasoning, extractor and answer in one batched greedy decode, with the KV cache kept throughout.

A rollout of a prompt needs, per example: greedy reasoning until a stop token or the token budget,
then the extractor text teacher-forced, then a short greedy answer, plus the prompt's NLL. Doing
that as two ``generate`` calls re-reads the whole question and reasoning for the answer, and a
third forward for the NLL. Here every row advances in lock step on one KV cache: a row whose
reasoning stops is fed its extractor as a chunk in the next step while the others keep reasoning,
finished rows leave the batch, and the NLL comes from the prefill.

Work that rows have in common is done once. Rows whose contexts differ only inside the prompt (the
candidates of one step on one example) share the keys and values of everything before the first
differing prompt token: with the prompt after the question, the whole question. That prefix is
run once per group and its cache copied to the rows. Below it, what every row of the batch has in
common (the chat template's system header, before any question) is run once for the batch.

A row may bring a closed set of *options* (the allowed answers' tokens after the extractor). Then
its answer is not generated but chosen: the distribution after the extractor gives every option's
first token, and each option longer than one token is fed once more on the row's cache, masked out
of attention again afterwards (like a rejected guess), to score the rest of its tokens. The answer
is the option with the highest summed log-probability; it can never be outside the set.

A row may bring a *draft*: a guess of its reasoning (for a candidate prompt, the current prompt's
reasoning, which a one-token edit rarely changes much). The draft is checked in the prefill, like
speculative decoding with the draft as proposer: the longest prefix that greedy decoding would
itself produce is kept, the rest is masked out of the cache, and decoding continues from there.
Later steps guess from an n-gram index of the draft (a rephrased reasoning often rejoins it), but
only as far as guessing pays: each row's acceptance rate is tracked, what a step of each width
costs on this device is measured as decoding goes, and the step takes the guess length with the
most expected tokens per second (often none on a compute-bound CPU). The output is exactly what
plain greedy decoding gives; only the number and width of sequential steps change.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from gradprompt.nodes.runtime.batching import pad
from gradprompt.nodes.runtime.greedy_head import greedy_head

NGRAMS = (3, 2)  # draft n-grams a row's reasoning tail is looked up by, longest first
HEAD_CHUNK = 1024  # positions sent through the output layer at once: bounds the logits' memory


@dataclass(frozen=True)
class DecodeJob:
    """One row: the chat context, where its prompt sits, the extractor, and an optional draft."""

    context: tuple[int, ...]
    prompt: tuple[int, int]
    extractor: tuple[int, ...]
    draft: tuple[int, ...] = ()
    gold: tuple[int, ...] = ()  # the gold answer's tokens after the extractor, for its log-probability
    options: tuple[tuple[int, ...], ...] = ()  # a closed answer set: the answer is the likeliest of these


@dataclass(frozen=True)
class Decoded:
    reasoning: tuple[int, ...]
    answer: tuple[int, ...]
    prompt_nll: float  # mean NLL of the prompt tokens (0 for an empty prompt)
    draft_accepted: int  # draft tokens greedy decoding confirmed
    gold_logprob: float = 0.0  # log p(gold answer | context, reasoning, extractor); 0 without a gold answer
    option_logprobs: tuple[float, ...] = ()  # log p(option | context, reasoning, extractor), per option


class _Row:
    """Decode state of one row between steps."""

    def __init__(self, job: DecodeJob):
        self.job = job
        self.reasoning: list[int] = []
        self.answer: list[int] = []
        self.feed: list[int] = []
        self.answering = False
        self.done = False
        self.accepted = 0
        self.guess: list[int] = []
        self.gold_pending = False  # this step's guess is the gold answer, teacher-forced
        self.gold_logprob: float | None = None
        self.option_logprobs: list[float] | None = None  # filled once the extractor is fed
        self.option_queue: list[int] = []  # options longer than one token, still to be fed
        self.scoring: int | None = None  # the option fed this step (its tokens are masked out after)
        self.tried = 0  # guessed tokens verified after the prefill, and how many held
        self.held = 0
        self._index: dict[tuple[int, ...], int] | None = None

    def _ngram_index(self) -> dict[tuple[int, ...], int]:
        """Where each n-gram of the draft last ends: built once, so a lookup per step is O(1)."""
        if self._index is None:
            draft, index = self.job.draft, {}
            for n in NGRAMS:
                for end in range(n, len(draft) + 1):
                    index[tuple(draft[end - n : end])] = end
            self._index = index
        return self._index

    def acceptance(self) -> float:
        """Estimated chance that the next guessed token holds (a uniform prior on few guesses)."""
        return (self.held + 1) / (self.tried + 2)

    @property
    def choosing(self) -> bool:
        """Whether this step's logits score options rather than give a greedy token."""
        return self.answering and bool(self.job.options)

    def first_kept(self) -> int:
        """Fed position of the first logit this step needs: every fed option token, else the last
        fed token (whose prediction is the next token)."""
        return 0 if self.scoring is not None else len(self.feed) - 1

    def score_options(self, logits: torch.Tensor) -> None:
        """Take this step's logits into the options' log-probabilities and plan the next feed."""
        options = self.job.options
        if self.scoring is None:  # the extractor was fed: its last logit predicts every first token
            logp = torch.log_softmax(logits[0].float(), dim=-1)
            self.option_logprobs = logp[[o[0] for o in options]].tolist()
            self.option_queue = [k for k, o in enumerate(options) if len(o) > 1]
        else:  # option k's tokens but its last were fed: their logits predict its later tokens
            rest = torch.as_tensor(options[self.scoring][1:], device=logits.device)
            logp = torch.log_softmax(logits[: len(rest)].float(), dim=-1)
            self.option_logprobs[self.scoring] += float(logp.gather(1, rest[:, None]).sum())
        if self.option_queue:
            self.scoring = self.option_queue.pop(0)
            self.feed = list(options[self.scoring][:-1])
            return
        self.scoring, self.done = None, True
        best = max(range(len(options)), key=self.option_logprobs.__getitem__)
        self.answer = list(options[best])
        if self.job.gold in options:
            self.gold_logprob = self.option_logprobs[options.index(self.job.gold)]

    def plan_guess(self, limit: int, max_new: int) -> None:
        """Draft tokens that could be verified after this step's feed: what followed the latest
        occurrence of the reasoning's last tokens in the draft."""
        self.guess = []
        self.gold_pending = False
        if self.answering:
            if self.job.options and self.job.gold in self.job.options:
                return  # the gold answer's log-probability comes with the options'
            # the gold answer is the guess for the answer: one forward scores it teacher-forced
            # and, where greedy decoding agrees with it, also confirms the greedy answer
            if self.job.gold and self.gold_logprob is None and not self.answer:
                self.guess, self.gold_pending = list(self.job.gold), True
            return
        if not self.job.draft or len(self.feed) != 1 or limit <= 0:
            return
        room = min(limit, max_new - len(self.reasoning) - 1)
        index = self._ngram_index()
        for n in NGRAMS:
            if len(self.reasoning) >= n:
                end = index.get(tuple(self.reasoning[-n:]))
                if end is not None:
                    self.guess = list(self.job.draft[end : end + max(room, 0)])
                    return

    def take(self, token: int, stop: frozenset[int], max_new: int, max_answer: int) -> None:
        """Consume the greedy prediction after the last fed token and decide what to feed next."""
        if not self.answering:
            if token in stop or len(self.reasoning) >= max_new:
                self._start_answer([])
                return
            self.reasoning.append(token)
            if len(self.reasoning) >= max_new:
                self._start_answer([token])
            else:
                self.feed = [token]
            return
        if token in stop or len(self.answer) >= max_answer:
            self.done = True
            return
        self.answer.append(token)
        self.done = len(self.answer) >= max_answer
        self.feed = [] if self.done else [token]

    def _start_answer(self, before: list[int]) -> None:
        self.answering = True
        self.feed = before + list(self.job.extractor)


# ----- what a decode step costs ------------------------------------------------------------------


WIDTHS = (1, 2, 3, 5, 9, 17, 33, 65)


def _bucket(values: Sequence[int], x: int) -> int:
    return next((v for v in values if v >= x), values[-1])


class StepCosts:
    """Seconds per row of a decode step, by step width (fed + guessed tokens per row) and batch
    size, learned from the steps as they run. A width never timed at a batch size is assumed to
    cost what one token does, so it gets tried once; after that the measurement decides."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[int, int], float] = {}

    @staticmethod
    def _key(width: int, rows: int) -> tuple[int, int]:
        return _bucket(WIDTHS, width), 1 << max(rows - 1, 0).bit_length()

    def estimate(self, width: int, rows: int) -> float:
        key = self._key(width, rows)
        if key in self.seconds:
            return self.seconds[key]
        return self.seconds.get((1, key[1]), 1.0)

    def record(self, width: int, rows: int, seconds: float) -> None:
        key = self._key(width, rows)
        per_row = seconds / max(rows, 1)
        old = self.seconds.get(key)
        self.seconds[key] = per_row if old is None else 0.5 * (old + per_row)


_COSTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def step_costs(model) -> StepCosts:
    """The cost table of ``model`` in this process (kept across calls: the device does not change)."""
    if model not in _COSTS:
        _COSTS[model] = StepCosts()
    return _COSTS[model]


def _expected_held(p: float, k: int) -> float:
    """Expected accepted tokens of a k-token guess whose tokens each hold with probability p,
    verified left to right until the first miss."""
    return p * (1 - p**k) / (1 - p) if p < 1 else float(k)


def choose_guess_length(rows: Sequence[_Row], costs: StepCosts, limit: int) -> int:
    """The guess length (same cap for every row) with the most expected new tokens per second."""
    fed = max(len(r.feed) + (len(r.guess) if r.gold_pending else 0) for r in rows)
    lengths = sorted({0, *(min(len(r.guess), limit) for r in rows if not r.gold_pending)})
    best, best_rate = 0, -1.0
    for k in lengths:
        gain = sum(
            1 + (_expected_held(r.acceptance(), min(len(r.guess), k)) if not r.gold_pending else 0) for r in rows
        )
        width = max(fed, max((len(r.feed) + min(len(r.guess), k) for r in rows if not r.gold_pending), default=0))
        rate = gain / (costs.estimate(width, len(rows)) * len(rows))
        if rate > best_rate * 1.02:  # a longer guess must pay for itself with a margin
            best, best_rate = k, rate
    return best


# ----- the prefill -------------------------------------------------------------------------------


def _output_logits(model, hidden: torch.Tensor) -> torch.Tensor:
    """The model's logits from final hidden states, with the scalings some families apply."""
    logits = model.get_output_embeddings()(hidden)
    cfg = model.config
    if getattr(cfg, "logit_scale", None):
        logits = logits * cfg.logit_scale
    if getattr(cfg, "logits_scaling", None):
        logits = logits / cfg.logits_scaling
    if getattr(cfg, "final_logit_softcapping", None):
        logits = torch.tanh(logits / cfg.final_logit_softcapping) * cfg.final_logit_softcapping
    return logits


def _through_head(model, hidden: torch.Tensor, reduce: Callable[[torch.Tensor, slice], torch.Tensor]) -> list:
    """``reduce(logits, rows)`` of many positions, through the output layer a chunk at a time, so
    full distributions are never kept for more than a chunk."""
    out = []
    for i in range(0, len(hidden), HEAD_CHUNK):
        rows = slice(i, i + HEAD_CHUNK)
        out.append(reduce(_output_logits(model, hidden[rows]), rows))
    return torch.cat(out).tolist() if out else []


def shared_prefix_lengths(jobs: Sequence[DecodeJob]) -> list[int]:
    """For each row, how many leading context tokens it shares with the other rows of its group
    (rows with the same context before the prompt: one example's candidates, whatever their
    lengths): everything before the first prompt position where the group differs, and at least
    one token short of the group's shortest context. 0 for a row alone in its group."""
    groups: dict[tuple, list[int]] = {}
    for b, j in enumerate(jobs):
        groups.setdefault(j.context[: j.prompt[0]], []).append(b)
    out = [0] * len(jobs)
    for members in groups.values():
        if len(members) < 2:
            continue
        first = jobs[members[0]]
        p0 = first.prompt[0]
        head = first.context[p0 : first.prompt[1]]
        same = len(head)
        for b in members[1:]:
            other = jobs[b].context[p0 : jobs[b].prompt[1]]
            same = min(same, len(other))
            same = next((i for i in range(same) if other[i] != head[i]), same)
        shared = min(p0 + same, min(len(jobs[b].context) for b in members) - 1)
        for b in members:
            out[b] = shared
    return out


def _split(flat: list, counts: Sequence[int]) -> list[list]:
    out, at = [], 0
    for c in counts:
        out.append(flat[at : at + c])
        at += c
    return out


def _decoder_pass(model, ids, mask, position_ids, cache):
    out = model.get_decoder()(
        input_ids=ids, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True
    )
    return out.last_hidden_state, out.cache


def common_prefix_length(jobs: Sequence[DecodeJob], shared: Sequence[int]) -> int:
    """Leading context tokens every row of the batch has in common (the chat's system header and
    whatever follows it before the first question differs): run once for the whole batch. At most
    every grouped row's shared prefix, and one token short of the shortest context."""
    if len(jobs) < 2:
        return 0
    first = jobs[0].context
    n = min(len(j.context) for j in jobs) - 1
    for j in jobs[1:]:
        other = j.context
        n = next((i for i in range(n) if other[i] != first[i]), n)
        if n <= 0:
            return 0
    grouped = [s for s in shared if s]
    return min(n, *grouped) if grouped else n


def _prefill(model, rows: list[_Row], pad_id: int, device, max_new: int) -> tuple:
    """Three levels of shared work: the batch's common prefix once, then each group's prefix (one
    example's candidates) once on top of it, then every row's own context + draft.

    Returns the cache, the attention mask, each row's prompt NLL and each row's greedy tokens from
    the position predicting its draft's first token on."""
    jobs = [r.job for r in rows]
    n_rows = len(rows)
    shared = shared_prefix_lengths(jobs)
    common = common_prefix_length(jobs, shared)
    start = [s or common for s in shared]  # where each row's own part begins
    cache = DynamicCache(config=model.config)
    long_ = {"dtype": torch.long, "device": device}
    com_mask = torch.ones((1, common), **long_)
    com_hidden = None
    if common:
        com_ids = torch.as_tensor([jobs[0].context[:common]], **long_)
        positions = torch.arange(common, device=device)[None, :]
        com_hidden, cache = _decoder_pass(model, com_ids, com_mask, positions, cache)
    groups: dict[tuple[int, ...], int] = {}
    for b, j in enumerate(jobs):
        if shared[b] > common:
            groups.setdefault(j.context[: shared[b]], len(groups))
    gid = [groups.get(j.context[: shared[b]], 0) for b, j in enumerate(jobs)]
    grp_hidden = None
    if groups:
        grp_ids, grp_mask = pad([key[common:] for key in groups], pad_id, "left", device)
        if common:
            cache.reorder_cache(torch.zeros(len(groups), **long_))
        full = torch.cat([com_mask.expand(len(groups), -1), grp_mask], dim=1)
        positions = (full.cumsum(1) - 1).clamp(min=0)[:, common:]
        grp_hidden, cache = _decoder_pass(model, grp_ids, full, positions, cache)
        cache.reorder_cache(torch.as_tensor(gid, device=device))
        in_group = torch.as_tensor([s > common for s in shared], device=device)
        row_grp_mask = grp_mask[torch.as_tensor(gid, device=device)] * in_group[:, None]
    else:
        row_grp_mask = torch.zeros((n_rows, 0), **long_)
        if common:
            cache.reorder_cache(torch.zeros(n_rows, **long_))
    row_pre_mask = torch.cat([com_mask.expand(n_rows, -1), row_grp_mask], dim=1)
    suffixes = [j.context[s:] + j.draft[:max_new] for j, s in zip(jobs, start, strict=True)]
    suf_ids, suf_mask = pad(suffixes, pad_id, "left", device)
    mask = torch.cat([row_pre_mask, suf_mask], dim=1)
    positions = (mask.cumsum(1) - 1).clamp(min=0)[:, row_pre_mask.shape[1] :]
    hidden, cache = _decoder_pass(model, suf_ids, mask, positions, cache)

    width_grp, width_suf = row_grp_mask.shape[1], suf_ids.shape[1]

    def hidden_at(b: int, full_positions: range) -> torch.Tensor:
        """Final hidden states of row ``b`` at positions counted from the start of its context."""
        s, parts = start[b], []
        in_common = [p for p in full_positions if p < common]
        in_group = [p for p in full_positions if common <= p < s]
        in_suffix = [p for p in full_positions if p >= s]
        if in_common:
            parts.append(com_hidden[0, in_common])
        if in_group:
            parts.append(grp_hidden[gid[b], [width_grp - s + p for p in in_group]])
        if in_suffix:
            first = width_suf - len(suffixes[b]) - s
            parts.append(hidden[b, [first + p for p in in_suffix]])
        return torch.cat(parts) if parts else hidden.new_zeros((0, hidden.shape[-1]))

    # the prompt's NLL positions and the draft's greedy positions of every row, each through the
    # output layer in one batched pass (the draft's positions keep only their argmax)
    nll_hidden, nll_targets, nll_counts, greedy_hidden, greedy_counts = [], [], [], [], []
    for b, j in enumerate(jobs):
        p0, p1 = j.prompt
        first = max(p0, 1)
        nll_hidden.append(hidden_at(b, range(first - 1, max(p1 - 1, first - 1))))
        nll_targets.extend(j.context[first:p1])
        nll_counts.append(len(nll_hidden[-1]))
        n = len(j.context)
        greedy_hidden.append(hidden_at(b, range(n - 1, n + len(j.draft[:max_new]))))
        greedy_counts.append(len(greedy_hidden[-1]))
    targets = torch.as_tensor(nll_targets, dtype=torch.long, device=device)
    token_nll = _through_head(
        model,
        torch.cat(nll_hidden),
        lambda logits, rows: -torch.log_softmax(logits.float(), dim=-1).gather(1, targets[rows, None])[:, 0],
    )
    nlls = [sum(part) / len(part) if part else 0.0 for part in _split(token_nll, nll_counts)]
    greedy = _split(greedy_tokens(model, torch.cat(greedy_hidden)), greedy_counts)
    return cache, mask, nlls, greedy


def greedy_tokens(model, hidden: torch.Tensor) -> list[int]:
    """The greedy token at each of many positions' final hidden states: through the exact
    low-precision argmax where the model has one (:mod:`nodes.runtime.greedy_head`), else through
    the output layer a chunk at a time."""
    head = greedy_head(model)
    if head is None:
        return _through_head(model, hidden, lambda logits, _: logits.argmax(-1))
    return torch.cat([head.argmax(hidden[i : i + HEAD_CHUNK]) for i in range(0, len(hidden), HEAD_CHUNK)]).tolist()


# ----- the decode --------------------------------------------------------------------------------


@torch.no_grad()
def reason_and_answer(
    model,
    jobs: Sequence[DecodeJob],
    *,
    max_new_tokens: int,
    max_answer_tokens: int,
    stop_ids: frozenset[int],
    pad_id: int,
    device: torch.device,
    lookahead: int = 16,
    on_done: Callable[[int], None] | None = None,
    costs: StepCosts | None = None,
) -> list[Decoded]:
    """Greedy reasoning, extractor and answer for every job on one shared KV cache.

    ``lookahead`` bounds how many draft tokens a row may have verified per step after the prefill
    (0 turns that off); how many it does is chosen step by step from ``costs`` (by default the
    ones measured for this model in this process).
    ``on_done(n)`` hears of rows as they finish (for a progress bar).
    """
    rows = [_Row(j) for j in jobs]
    if not rows:
        return []
    cache, mask, nlls, greedy_all = _prefill(model, rows, pad_id, device, max_new_tokens)
    width = mask.shape[1]
    for b, (r, greedy) in enumerate(zip(rows, greedy_all, strict=True)):
        draft = r.job.draft[:max_new_tokens]
        while r.accepted < len(draft) and greedy[r.accepted] == draft[r.accepted] not in stop_ids:
            r.accepted += 1
        r.reasoning = list(draft[: r.accepted])
        r.take(greedy[r.accepted], stop_ids, max_new_tokens, max_answer_tokens)
        rejected = len(draft) - r.accepted
        if rejected:  # their cache entries stay but are masked out of attention
            mask[b, width - rejected :] = 0
    lengths = mask.sum(1)
    costs = costs if costs is not None else step_costs(model)

    active = rows
    while True:
        keep = [i for i, r in enumerate(active) if not r.done]
        if on_done is not None and len(keep) < len(active):
            on_done(len(active) - len(keep))
        if not keep:
            break
        if len(keep) < len(active):  # finished rows leave the batch and the cache
            idx = torch.as_tensor(keep, device=device)
            cache.reorder_cache(idx)
            mask, lengths = mask[idx], lengths[idx]
            active = [active[i] for i in keep]
        for r in active:
            r.plan_guess(lookahead, max_new_tokens)
        cap = choose_guess_length(active, costs, lookahead)
        for r in active:
            if not r.gold_pending:
                r.guess = r.guess[:cap]
        ids, new_mask = pad([r.feed + r.guess for r in active], pad_id, "right", device)
        keep = torch.zeros_like(new_mask, dtype=torch.bool)
        for i, r in enumerate(active):
            keep[i, r.first_kept() : len(r.feed) + len(r.guess)] = True
        started = time.perf_counter()
        hidden, cache = _decoder_pass(
            model,
            ids,
            torch.cat([mask, new_mask], dim=1),
            lengths[:, None] + torch.arange(ids.shape[1], device=device)[None, :],
            cache,
        )
        row_logits, predictions = _step_outputs(model, active, hidden, keep)
        _score_gold(active, row_logits)
        costs.record(ids.shape[1], len(active), time.perf_counter() - started)
        grown = []
        for i, (r, preds) in enumerate(zip(active, predictions, strict=True)):
            fed, used = len(r.feed), 0
            if r.choosing:
                if r.scoring is not None:  # an option's tokens leave attention once scored
                    fed = 0
                r.score_options(row_logits[i])
                new_mask[i, fed:] = 0
                grown.append(fed)
                continue
            r.take(preds[0], stop_ids, max_new_tokens, max_answer_tokens)
            # a guessed token greedy decoding also chose is already in the cache: keep going
            while used < len(r.guess) and not r.done and r.feed == [r.guess[used]]:
                used += 1
                r.take(preds[used], stop_ids, max_new_tokens, max_answer_tokens)
            if not r.gold_pending:
                r.accepted += used
                if r.guess:
                    r.tried += min(used + 1, len(r.guess))
                    r.held += used
            new_mask[i, fed + used :] = 0
            grown.append(fed + used)
        mask = torch.cat([mask, new_mask], dim=1)
        lengths = lengths + torch.as_tensor(grown, device=device)
    return [
        Decoded(
            tuple(r.reasoning),
            tuple(r.answer),
            nll,
            r.accepted,
            r.gold_logprob or 0.0,
            tuple(r.option_logprobs or ()),
        )
        for r, nll in zip(rows, nlls, strict=True)
    ]


def _step_outputs(model, rows: list[_Row], hidden: torch.Tensor, keep: torch.Tensor) -> tuple[list, list[list[int]]]:
    """Per row, the logits at its kept positions where it needs a distribution (to score options
    or the gold answer; ``None`` elsewhere) and its greedy token at each kept position."""
    kept = torch.split(hidden[keep], keep.sum(1).tolist())
    full = [r.choosing or r.gold_pending for r in rows]
    logits: list = [_output_logits(model, h) if f else None for h, f in zip(kept, full, strict=True)]
    greedy_at = [h for h, f in zip(kept, full, strict=True) if not f]
    greedy = iter(_split(greedy_tokens(model, torch.cat(greedy_at)), [len(h) for h in greedy_at]) if greedy_at else [])
    # the tokens come back as lists: that waits for the device, so the step's time is its true time
    predictions = [lg.argmax(-1).tolist() if lg is not None else next(greedy) for lg in logits]
    return logits, predictions


def _score_gold(rows: list[_Row], logits: Sequence[torch.Tensor]) -> None:
    """Log-probability of the gold answer for rows whose guess this step was the gold answer:
    the kept logits start at the extractor's last token, which predicts the answer's first."""
    for r, row_logits in zip(rows, logits, strict=True):
        if r.gold_pending:
            gold = torch.as_tensor(r.job.gold, device=row_logits.device)
            logp = torch.log_softmax(row_logits[: len(gold)].float(), dim=-1)
            r.gold_logprob = float(logp.gather(1, gold[:, None]).sum())
