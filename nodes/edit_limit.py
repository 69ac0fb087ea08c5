"""How far one update may move the prompt: GPO's decaying edit limit and a measured word distance.

The limit starts at ``edit_max`` words and decays to ``edit_min`` over the run (cosine by default,
as in GPO; linear and constant too). Every candidate of a step, whoever proposed it, is measured
against the current prompt by word-level Levenshtein distance and discarded when over the limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def edit_limit(schedule: str, step: int, total: int, high: int, low: int) -> int:
    """Words one update may change at ``step`` (counting from 1) of ``total``."""
    if schedule == "constant" or total <= 0:
        return high
    t = min(max(step, 0), total)
    if schedule == "linear":
        return int(high - (high - low) * t / total)
    if schedule == "cosine":
        return int(low + (high - low) * (1 + math.cos(math.pi * t / total)) / 2)
    raise ValueError(f"unknown edit-limit schedule {schedule!r}: use cosine, linear or constant")


def word_distance(a: str | Sequence[str], b: str | Sequence[str]) -> int:
    """Levenshtein distance between two texts counted in words (insert, delete, replace)."""
    x = a.split() if isinstance(a, str) else list(a)
    y = b.split() if isinstance(b, str) else list(b)
    previous = list(range(len(y) + 1))
    for i, wx in enumerate(x, start=1):
        current = [i]
        for j, wy in enumerate(y, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (wx != wy)))
        previous = current
    return previous[-1]


def positions_for_step(limit: int, high: int, low: int, max_positions: int) -> int:
    """Token positions a gradient proposal may change when the edit limit is ``limit``: all
    ``max_positions`` at the start, one by the end, never more than the limit itself."""
    if max_positions <= 1:
        return 1
    share = (limit - low) / (high - low) if high > low else 1.0
    return max(1, min(limit, 1 + round((max_positions - 1) * min(max(share, 0.0), 1.0))))
