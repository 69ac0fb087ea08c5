"""Reasoning, extractor and answer in one batched greedy decode, with the KV cache kept throughout.

A rollout of a prompt needs, per example: greedy reasoning until a stop token or the token budget,
then the extractor text teacher-forced, then a short greedy answer, plus the prompt's NLL. Doing
that as two ``generate`` calls re-reads the whole question and reasoning for the answer, and a
third forward for the NLL. Here every row advances in lock step on one KV cache: a row whose
reasoning stops is fed its extractor as a chunk in the next step while the others keep reasoning,
finished rows leave the batch, and the NLL comes from the prefill's logits.

A row may bring a *draft*: a guess of its reasoning (for a candidate prompt, the current prompt's
reasoning, which a one-token edit rarely changes much). The draft is checked in the prefill, like
speculative decoding with the draft as proposer: the longest prefix that greedy decoding would
itself produce is kept, the rest is masked out of the cache, and decoding continues from there.
The output is exactly what plain greedy decoding gives; only the number of sequential steps
shrinks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from nodes.runtime.batching import pad


@dataclass(frozen=True)
class DecodeJob:
    """One row: the chat context, where its prompt sits, the extractor, and an optional draft."""

    context: tuple[int, ...]
    prompt: tuple[int, int]
    extractor: tuple[int, ...]
    draft: tuple[int, ...] = ()
    gold: tuple[int, ...] = ()  # the gold answer's tokens after the extractor, for its log-probability


@dataclass(frozen=True)
class Decoded:
    reasoning: tuple[int, ...]
    answer: tuple[int, ...]
    prompt_nll: float  # mean NLL of the prompt tokens (0 for an empty prompt)
    draft_accepted: int  # draft tokens greedy decoding confirmed
    gold_logprob: float = 0.0  # log p(gold answer | context, reasoning, extractor); 0 without a gold answer


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

    def plan_guess(self, limit: int, max_new: int) -> None:
        """Draft tokens to verify after this step's feed: what followed the latest occurrence of
        the reasoning's last tokens in the draft (a rephrased reasoning often rejoins it)."""
        self.guess = []
        self.gold_pending = False
        if self.answering:
            # the gold answer is the guess for the answer: one forward scores it teacher-forced
            # and, where greedy decoding agrees with it, also confirms the greedy answer
            if self.job.gold and self.gold_logprob is None and not self.answer:
                self.guess, self.gold_pending = list(self.job.gold), True
            return
        draft = self.job.draft
        if not draft or len(self.feed) != 1 or limit <= 0:
            return
        room = min(limit, max_new - len(self.reasoning) - 1)
        for n in (3, 2):
            if len(self.reasoning) < n:
                continue
            tail = self.reasoning[-n:]
            for start in range(len(draft) - n, -1, -1):
                if list(draft[start : start + n]) == tail:
                    self.guess = list(draft[start + n : start + n + room])
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


def _prefill(model, rows: list[_Row], pad_id: int, device, max_new: int):
    """Left-padded forward over context + draft. Returns the cache, the attention mask and, per
    row, the logits from the position predicting the prompt's first token to the end."""
    seqs = [r.job.context + r.job.draft[:max_new] for r in rows]
    ids, mask = pad(seqs, pad_id, "left", device)
    width = ids.shape[1]
    keep = torch.zeros_like(mask, dtype=torch.bool)
    for b, (r, seq) in enumerate(zip(rows, seqs, strict=True)):
        keep[b, width - len(seq) + max(r.job.prompt[0] - 1, 0) :] = True
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=(mask.cumsum(1) - 1).clamp(min=0),
        past_key_values=DynamicCache(config=model.config),
        use_cache=True,
        logits_to_keep=keep,
    )
    return out.past_key_values, mask, torch.split(out.logits, keep.sum(1).tolist())


def _prompt_nll(job: DecodeJob, row_logits: torch.Tensor) -> float:
    """Mean NLL of the prompt tokens; ``row_logits[0]`` predicts the prompt's first token."""
    p0, p1 = job.prompt
    n_prompt = p1 - max(p0, 1)
    if n_prompt <= 0:
        return 0.0
    logp = torch.log_softmax(row_logits[:n_prompt].float(), dim=-1)
    targets = torch.as_tensor(job.context[p1 - n_prompt : p1], device=logp.device)
    return float(-logp.gather(1, targets[:, None]).mean())


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
    lookahead: int = 8,
    on_done: Callable[[int], None] | None = None,
) -> list[Decoded]:
    """Greedy reasoning, extractor and answer for every job on one shared KV cache.

    ``lookahead`` bounds how many draft tokens are verified per step after the prefill (0 turns
    that off); on a memory-bound device checking a few extra tokens costs about as much as one.
    ``on_done(n)`` hears of rows as they finish (for a progress bar).
    """
    rows = [_Row(j) for j in jobs]
    if not rows:
        return []
    cache, mask, logits = _prefill(model, rows, pad_id, device, max_new_tokens)
    nlls = []
    width = mask.shape[1]
    for b, (r, row_logits) in enumerate(zip(rows, logits, strict=True)):
        nlls.append(_prompt_nll(r.job, row_logits))
        draft = r.job.draft[:max_new_tokens]
        first = len(r.job.context) - 1 - max(r.job.prompt[0] - 1, 0)
        greedy = row_logits[first:].argmax(-1).tolist()  # predictions for draft[0], draft[1], ... and after
        while r.accepted < len(draft) and greedy[r.accepted] == draft[r.accepted] not in stop_ids:
            r.accepted += 1
        r.reasoning = list(draft[: r.accepted])
        r.take(greedy[r.accepted], stop_ids, max_new_tokens, max_answer_tokens)
        rejected = len(draft) - r.accepted
        if rejected:  # their cache entries stay but are masked out of attention
            mask[b, width - rejected :] = 0
    lengths = mask.sum(1)

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
        ids, new_mask = pad([r.feed + r.guess for r in active], pad_id, "right", device)
        keep = torch.zeros_like(new_mask, dtype=torch.bool)
        for i, r in enumerate(active):
            keep[i, len(r.feed) - 1 : len(r.feed) + len(r.guess)] = True
        out = model(
            input_ids=ids,
            attention_mask=torch.cat([mask, new_mask], dim=1),
            position_ids=lengths[:, None] + torch.arange(ids.shape[1], device=device)[None, :],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=keep,
        )
        cache = out.past_key_values
        counts = keep.sum(1).tolist()
        _score_gold(active, torch.split(out.logits, counts))
        predictions = torch.split(out.logits.argmax(-1), counts)
        grown = []
        for i, (r, preds) in enumerate(zip(active, predictions, strict=True)):
            preds = preds.tolist()
            fed, used = len(r.feed), 0
            r.take(preds[0], stop_ids, max_new_tokens, max_answer_tokens)
            # a guessed token greedy decoding also chose is already in the cache: keep going
            while used < len(r.guess) and not r.done and r.feed == [r.guess[used]]:
                used += 1
                r.take(preds[used], stop_ids, max_new_tokens, max_answer_tokens)
            if not r.gold_pending:
                r.accepted += used
            new_mask[i, fed + used :] = 0
            grown.append(fed + used)
        mask = torch.cat([mask, new_mask], dim=1)
        lengths = lengths + torch.as_tensor(grown, device=device)
    return [
        Decoded(tuple(r.reasoning), tuple(r.answer), nll, r.accepted, r.gold_logprob or 0.0)
        for r, nll in zip(rows, nlls, strict=True)
    ]


def _score_gold(rows: list[_Row], logits: Sequence[torch.Tensor]) -> None:
    """Log-probability of the gold answer for rows whose guess this step was the gold answer:
    the kept logits start at the extractor's last token, which predicts the answer's first."""
    for r, row_logits in zip(rows, logits, strict=True):
        if r.gold_pending:
            gold = torch.as_tensor(r.job.gold, device=row_logits.device)
            logp = torch.log_softmax(row_logits[: len(gold)].float(), dim=-1)
            r.gold_logprob = float(logp.gather(1, gold[:, None]).sum())
