"""Confidence intervals for accuracies measured on a finite test split.

A 48-example test split cannot tell 0.50 from 0.58; reporting the interval keeps a benchmark table
from claiming gains it did not measure. Wilson's score interval is used because it stays inside
[0, 1] and behaves at 0 and n correct, where the normal approximation collapses to a point.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for ``correct`` successes out of ``total`` trials."""
    if total <= 0:
        raise ValueError("an interval needs at least one example")
    if not 0 <= correct <= total:
        raise ValueError(f"correct must be between 0 and {total}, got {correct}")
    p = correct / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z / (1 + z2 / total) * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)
