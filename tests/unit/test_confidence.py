"""Wilson score intervals against published values and their defining properties."""

from __future__ import annotations

import math

import pytest

from gradprompt.nodes.tasks.confidence import wilson_interval


@pytest.mark.parametrize(
    ("correct", "total", "low", "high"),
    [
        (5, 10, 0.2366, 0.7634),  # textbook example
        (0, 10, 0.0, 0.2775),  # the normal approximation would give [0, 0]
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),  # 81 of 263, a common worked example
        (1, 1, 0.2065, 1.0),
    ],
)
def test_known_counts(correct, total, low, high):
    got = wilson_interval(correct, total)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_interval_contains_the_estimate_and_shrinks_with_n():
    widths = []
    for n in (10, 40, 160, 640):
        low, high = wilson_interval(n * 3 // 10, n)
        assert low < 0.3 < high
        widths.append(high - low)
    assert widths == sorted(widths, reverse=True)
    # asymptotically the half-width approaches 1.96 * sqrt(p(1-p)/n)
    assert widths[-1] / 2 == pytest.approx(1.96 * math.sqrt(0.3 * 0.7 / 640), rel=0.02)


def test_symmetric_in_successes_and_failures():
    low, high = wilson_interval(7, 25)
    low2, high2 = wilson_interval(18, 25)
    assert (low, high) == pytest.approx((1 - high2, 1 - low2))


@pytest.mark.parametrize(("correct", "total"), [(0, 0), (-1, 5), (6, 5)])
def test_bad_counts_are_refused(correct, total):
    with pytest.raises(ValueError):
        wilson_interval(correct, total)
