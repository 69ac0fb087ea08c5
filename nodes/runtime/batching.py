"""Padding and chunking shared by generation and scoring."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def pad(seqs: Sequence[Sequence[int]], pad_id: int, side: str, device: torch.device):
    """Stack token lists into (ids, attention_mask), padding on ``side`` ('left' for generation,
    where every row must end at the same column, 'right' for teacher forcing)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        n = len(seq)
        if n == 0:
            continue
        cols = slice(width - n, width) if side == "left" else slice(0, n)
        ids[row, cols] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return ids.to(device), mask.to(device)


def run_chunked(
    items: Sequence[T],
    fn: Callable[[list[T]], list[R]],
    max_batch: int,
    key: Callable[[T], Any] | None = None,
) -> list[R]:
    """Apply ``fn`` to chunks of at most ``max_batch`` items and return results in input order.

    Items are grouped by ``key`` (a length, or a tuple led by one) so rows of similar length share a chunk and little
    compute goes to padding. On a CUDA out-of-memory error the chunk is halved and retried
    instead of crashing the run.
    """
    order = sorted(range(len(items)), key=(lambda i: key(items[i])) if key else (lambda i: i))
    results: list[R | None] = [None] * len(items)
    start, size = 0, max(1, max_batch)
    while start < len(order):
        idx = order[start : start + size]
        try:
            out = fn([items[i] for i in idx])
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            torch.cuda.empty_cache()
            size //= 2
            continue
        for i, r in zip(idx, out, strict=True):
            results[i] = r
        start += len(idx)
    return results  # type: ignore[return-value]
