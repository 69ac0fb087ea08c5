"""GReaTer's candidate tokens for one prompt position.

Per example, the top-k tokens of the model's own next-token distribution at the position;
intersected within small random groups of examples (a token several examples agree on) and
united across groups; special, non-plain and banned tokens removed; k widened until enough
remain. Everything is a (B, V) boolean mask operation: no Python loop over the vocabulary.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import torch


def example_groups(n_examples: int, group_size: int, n_groups: int, rng: random.Random) -> list[list[int]]:
    """``n_groups`` random subsets of ``group_size`` distinct examples each, drawn independently
    (as the GReaTer authors do), so every intersection really is over ``group_size`` examples. With
    no more examples than a group holds there is one group of all of them (more would repeat it)."""
    if n_examples <= 0:
        return []
    if n_examples <= group_size:
        return [list(range(n_examples))]
    return [sorted(rng.sample(range(n_examples), group_size)) for _ in range(n_groups)]


def propose_candidates(
    logprobs: torch.Tensor,
    allowed: torch.Tensor,
    banned: Iterable[int],
    *,
    top_k: int,
    groups: list[list[int]],
    min_count: int,
) -> list[int]:
    """Candidate token ids, most probable (summed over examples) first."""
    n_vocab = logprobs.shape[1]
    usable = allowed[:n_vocab].clone()
    banned_ids = [t for t in banned if 0 <= t < n_vocab]
    if banned_ids:
        usable[banned_ids] = False
    group_index = [torch.as_tensor(g, device=logprobs.device) for g in groups]
    k = max(1, top_k)
    while True:
        top = logprobs.topk(min(k, n_vocab), dim=1).indices
        member = torch.zeros_like(usable).expand(logprobs.shape[0], -1).clone()
        member.scatter_(1, top, True)
        united = torch.zeros_like(usable)
        for g in group_index:
            united |= member[g].all(0)
        chosen = (united & usable).nonzero()[:, 0]
        if chosen.numel() >= min_count or k >= n_vocab:
            break
        k *= 2
    order = logprobs[:, chosen].sum(0).argsort(descending=True)
    return chosen[order].tolist()
