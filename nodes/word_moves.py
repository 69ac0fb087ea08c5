"""GReaTer's gradient proposals with the word as the unit of change.

A step works at one *slot* of the prompt: the gap before word ``slot`` (``slot == len(words)`` is
the end). Three moves come from it:

- **replace** word ``slot`` (all of its tokens) by another word,
- **insert** a word into the gap,
- **delete** word ``slot`` (or the punctuation mark there).

Replacement and insertion draw their words from the model itself, as GReaTer draws tokens: per
example the top-k of the next-token distribution at the slot (given the question and the prompt
before it), intersected over small random groups of examples and united, keeping only tokens that
start a word there. Each candidate first token is ranked by the one-hot gradient of the answer
loss, taken through the model's own reasoning, in one forward and backward per step: on the prompt
with the slot's word collapsed to its first token, or, where the slot holds no word (the end, a
punctuation mark), with a placeholder token in the gap (the likeliest word start there). The
best-ranked words are offered both in place of the slot's word and before it; the race tells which
helps. First tokens are completed to whole words by the model (greedy, while its likeliest next
token glues letters on), and a completion that is not an English word (:mod:`nodes.readability`)
is dropped, so no move leaves or makes a fragment.

Beside GReaTer's question-conditioned candidates, the model's likeliest word starts at the slot
with the prompt read on its own (an instruction, not a continuation of the question) join the
ranking (``reading_top_k``). Every move is costed by how much it raises the prompt's NLL read on its
own, so the words after the slot have a say too: moves over ``fluency_max_cost`` are not raced, and
the rest are raced in order of gradient rank plus ``fluency_weight`` times fluency rank.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers import DynamicCache

from gradprompt.nodes.prompt_ids import PromptIds
from gradprompt.nodes.readability import is_known
from gradprompt.nodes.runtime import word_units
from gradprompt.nodes.runtime.batching import pad, run_chunked
from gradprompt.nodes.runtime.candidates import example_groups, propose_candidates
from gradprompt.nodes.runtime.model_runtime import ModelRuntime
from gradprompt.nodes.runtime.scoring import fluency_costs, window_gradients
from gradprompt.nodes.settings import StepSettings
from gradprompt.nodes.tasks.task import Example

MAX_WORD_TOKENS = 4  # a completed word is at most this many tokens


@dataclass(frozen=True)
class WordMove:
    """One whole-word edit of a prompt."""

    prompt: PromptIds
    op: str  # replace | insert | delete
    slot: int
    old: str  # the word replaced or deleted ("" for an insertion)
    new: str  # the word put in ("" for a deletion)
    gradient: float | None = None  # the one-hot gradient that ranked its first token
    fluency_cost: float | None = None  # how much the move raises the prompt's NLL read on its own

    def describe(self) -> str:
        if self.op == "replace":
            return f"replace {self.old.strip()!r} with {self.new.strip()!r}"
        if self.op == "insert":
            return f"insert {self.new.strip()!r}"
        return f"delete {self.old.strip()!r}"


@dataclass
class WordProposal:
    """What one step's gradient pass found at a slot: the moves, best first within each kind, and
    the candidate first tokens the top-k rule allowed (for inspection and tests)."""

    slot: int
    moves: list[WordMove]
    candidates: list[int]
    disfluent: int = 0  # moves not raced: they read worse than the fluency limit allows


def _encode(rt: ModelRuntime):
    return rt.layout.text_ids


def next_token_logprobs(rt: ModelRuntime, pairs: Sequence[tuple[str, PromptIds]]) -> torch.Tensor:
    """(N, V) log-probabilities of the token after each (question, prompt prefix), batched."""

    def chunk(items):
        contexts = [rt.layout.encode(q, p) for q, p in items]
        seqs = [c.ids[: c.prompt[1]] for c in contexts]
        ids, mask = pad(seqs, rt.pad_id, "left", rt.device)
        with torch.no_grad():
            logits = rt.model(input_ids=ids, attention_mask=mask, logits_to_keep=1, use_cache=False).logits
        return list(torch.log_softmax(logits[:, -1].float(), dim=-1))

    return torch.stack(run_chunked(list(pairs), chunk, rt.max_batch, key=lambda qp: len(qp[0]) + len(qp[1])))


def complete_words(rt: ModelRuntime, prefix: PromptIds, first_tokens: Sequence[int]) -> list[PromptIds]:
    """Each first token grown into a whole word: while the model's likeliest next token after the
    prompt's text so far glues letters onto it, it is appended. Only the prompt's own words are the
    context (no question): how a word ends depends on the words just before it, and the rows stay a
    few tokens long.

    Every row shares the prefix, so it runs once and its keys and values are copied to every first
    token's row; each later pass feeds one token a row that is still growing (rows of equal length,
    no padding), where recomputing the rows whole would feed the prefix again on every pass."""
    words = [[int(t)] for t in first_tokens]
    if not words:
        return []
    device = rt.device
    cache = DynamicCache(config=rt.model.config)
    with torch.no_grad():
        if prefix:
            rt.model(input_ids=torch.as_tensor([prefix], device=device), cache=cache, use_cache=True)
            cache.reorder_cache(torch.zeros(len(words), dtype=torch.long, device=device))
        active = list(range(len(words)))
        for step in range(MAX_WORD_TOKENS - 1):
            ids = torch.as_tensor([[words[i][-1]] for i in active], device=device)
            positions = torch.full((len(active), 1), len(prefix) + step, device=device)
            logits = rt.model(input_ids=ids, position_ids=positions, cache=cache, use_cache=True).logits
            best = logits[:, -1].argmax(-1).tolist()
            keep = [
                j
                for j, (i, t) in enumerate(zip(active, best, strict=True))
                if word_units.continues_word(rt.tokenizer, words[i][-1], t)
            ]
            for j in keep:
                words[active[j]].append(best[j])
            if not keep:
                break
            if len(keep) < len(active):  # finished words leave the batch and the cache
                cache.reorder_cache(torch.as_tensor(keep, device=device))
            active = [active[j] for j in keep]
    return [tuple(w) for w in words]


def propose_word_moves(
    rt: ModelRuntime,
    forced_rows,
    settings: StepSettings,
    examples: Sequence[Example],
    prompt: PromptIds,
    slot: int,
    reasonings: Sequence[Sequence[int]],
    rng: random.Random,
    n: int,
    extra_tokens: Sequence[int] = (),
) -> WordProposal:
    """Up to ``n`` gradient-ranked replace/insert moves at ``slot`` (about half each where both
    apply), plus the deletion there. ``forced_rows(prompt)`` gives the teacher-forced rows of the
    gradient batch for a prompt (the question, that prompt, each example's reasoning and the gold
    answer)."""
    tok = rt.tokenizer
    parts = word_units.split(tok, prompt)
    spans = word_units.units(tok, prompt)
    slot = max(0, min(slot, len(parts)))
    head, here, tail = parts[:slot], parts[slot] if slot < len(parts) else (), parts[slot + 1 :]
    at = sum(len(u) for u in head)  # token position of the slot
    first_mask, later_mask = word_units.word_start_masks(tok, rt.embedding_matrix.shape[0])
    starts = (first_mask if at == 0 else later_mask).to(rt.device) & rt.allowed_tokens
    encode = _encode(rt)
    replacing = bool(here) and spans[slot].is_word

    grad_kw = {"temperature": settings.temperature, "nll_weight": settings.grad_nll_weight}
    moves: list[WordMove] = []
    if here:  # deletion needs no model work
        deleted = word_units.join(tok, encode, head, tail)
        moves.append(WordMove(deleted, "delete", slot, spans[slot].text, ""))

    # one forward and backward: on the prompt with the word collapsed to its first token, or with
    # a placeholder in the gap where there is no word to replace
    if replacing:
        base = word_units.join(tok, encode, head, [here[:1], *tail])
    else:
        logp = next_token_logprobs(rt, [(ex.question, tuple(prompt[:at])) for ex in examples])
        usable = starts[: logp.shape[1]]
        placeholder = int(logp.sum(0).masked_fill(~usable, float("-inf")).argmax())
        base = word_units.join(tok, encode, head, [(placeholder,), *([here] if here else []), *tail])
    (grad,) = window_gradients(rt, forced_rows(base), [at], **grad_kw)
    logp = grad.position_logprobs
    usable = starts[: logp.shape[1]]

    groups = example_groups(len(examples), settings.group_size, settings.n_groups, rng)
    banned = [here[0]] if replacing else []
    cands = propose_candidates(logp, starts, banned, top_k=settings.top_k, groups=groups, min_count=2 * n)
    cands += reading_candidates(rt, tuple(prompt[:at]), starts, [*cands, *banned], settings.reading_top_k)
    for t in extra_tokens:  # words at this slot in retrieved prompts (GPO's direction)
        if 0 <= t < len(usable) and bool(usable[t]) and t not in cands and t not in banned:
            cands.append(int(t))
    if not cands:
        chosen, disfluent = choose_moves(rt, prompt, moves, n, settings.fluency_weight, settings.fluency_max_cost)
        return WordProposal(slot, chosen, [], disfluent)
    values = grad.candidate_gradients(rt.embedding_matrix, torch.as_tensor(cands, device=rt.device)).tolist()
    ranked = sorted(zip(values, cands, strict=True))[: 2 * n]
    completed = complete_words(rt, tuple(prompt[:at]), [c for _, c in ranked])
    old_word = spans[slot].text.strip() if here else ""
    words, seen = [], set()
    for (value, _), word in zip(ranked, completed, strict=True):
        text = "".join(word_units.pieces(tok)[t] for t in word)
        if is_known(text.strip()) and text.strip() not in seen and text.strip() != old_word:
            seen.add(text.strip())
            words.append((value, word, text))
    # the best words go in both ways where the slot holds a word: in place of it and before it
    ops = ("replace", "insert") if replacing else ("insert",)
    per_op = -(-n // len(ops))
    for op in ops:
        for value, word, text in words[:per_op]:
            rest = [*([] if op == "replace" else [here] if here else []), *tail]
            new_prompt = word_units.join(tok, encode, head, [word, *rest])
            moves.append(WordMove(new_prompt, op, slot, old_word if op == "replace" else "", text, value))
    chosen, disfluent = choose_moves(rt, prompt, moves, n, settings.fluency_weight, settings.fluency_max_cost)
    return WordProposal(slot, chosen, cands, disfluent)


def reading_candidates(
    rt: ModelRuntime, prefix: PromptIds, starts: torch.Tensor, exclude: Sequence[int], k: int
) -> list[int]:
    """The ``k`` likeliest word starts after ``prefix`` with the prompt read on its own, as a
    user's message: the words the model expects in an instruction there ("Please", "What", "Read"),
    where the question-conditioned top-k offers words that continue the question."""
    if k <= 0:
        return []
    enc = rt.reading_layout.encode("", prefix)
    ids = torch.as_tensor([enc.ids[: enc.prompt[1]]], device=rt.device)
    with torch.no_grad():
        logits = rt.model(input_ids=ids, logits_to_keep=1, use_cache=False).logits[0, -1].float()
    usable = starts[: logits.shape[0]].clone()
    usable[list(exclude)] = False
    logits = logits[: usable.shape[0]].masked_fill(~usable, float("-inf"))
    top = logits.topk(min(k, int(usable.sum()))).indices.tolist()
    return [int(t) for t in top]


def choose_moves(
    rt: ModelRuntime,
    prompt: PromptIds,
    moves: list[WordMove],
    n: int,
    fluency_weight: float,
    max_cost: float | None = None,
) -> tuple[list[WordMove], int]:
    """The moves to race and how many were dropped as disfluent: the ``n`` best gradient moves,
    by the one-hot gradient alone or (``fluency_weight`` > 0) by gradient rank plus
    ``fluency_weight`` times the rank of the move's fluency cost, then the moves without a
    gradient (the deletion).

    The fluency cost is what the move adds to the NLL of the prompt read on its own. The top-k rule
    asks the model for words that fit the prompt *before* the slot; the cost also counts the words
    after it, which a left-to-right proposal never sees ("reports think step by step" reads well
    word by word and not as a whole). A move costing more than ``max_cost`` is not raced. Ranks
    rather than values, because a gradient and an NLL share no scale."""
    graded = sorted((m for m in moves if m.gradient is not None), key=lambda m: m.gradient)
    others = [m for m in moves if m.gradient is None]
    if (fluency_weight <= 0 and max_cost is None) or not moves:
        return [*graded[:n], *others], 0
    everything = [*graded, *others]
    costs = fluency_costs(rt, prompt, [m.prompt for m in everything])
    costed = [replace(m, fluency_cost=c) for m, c in zip(everything, costs, strict=True)]
    kept = [m for m in costed if max_cost is None or m.fluency_cost <= max_cost]
    graded = [m for m in kept if m.gradient is not None]
    others = [m for m in kept if m.gradient is None]
    if fluency_weight > 0:
        fluency_rank = {id(m): r for r, m in enumerate(sorted(graded, key=lambda m: m.fluency_cost))}
        order = sorted(range(len(graded)), key=lambda i: (i + fluency_weight * fluency_rank[id(graded[i])], i))
        graded = [graded[i] for i in order]
    return [*graded[:n], *others], len(costed) - len(kept)


def next_slot(tokenizer, prompt: PromptIds, slot: int) -> int:
    """Left-to-right sweep over the gaps before each word and the end, wrapping to the start."""
    return slot + 1 if slot + 1 <= len(word_units.units(tokenizer, prompt)) else 0
