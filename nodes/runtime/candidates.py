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
    """Random disjoint groups of examples (reshuffled for more groups than one pass gives)."""
    groups: list[list[int]] = []
    while len(groups) < n_groups:
        order = list(range(n_examples))
        rng.shuffle(order)
        for start in range(0, n_examples, group_size):
            groups.append(order[start : start + group_size])
            if len(groups) == n_groups:
                break
        if n_examples <= group_size:
            break  # one group holds everybody; more would repeat it
    return groups


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
