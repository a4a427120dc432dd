"""Confidence intervals, early-stopping bounds and the Mann-Whitney test: exact values.

Reference values were computed by hand (binomial sums written out below) or, for the
Mann-Whitney p-values, once with scipy.stats.mannwhitneyu(method="asymptotic",
use_continuity=True), which uses the same normal approximation with tie correction.
"""

from __future__ import annotations

import math

import pytest

from agents.contract.statistics import (
    binomial_cdf,
    mann_whitney,
    median_ci,
    quantile_upper_bound,
    summarize_ns,
)
from orchestrator.comparison import compare


def test_binomial_cdf_exact():
    # P(Bin(10, 1/2) <= 1) = (1 + 10) / 1024
    assert binomial_cdf(1, 10, 0.5) == pytest.approx(11 / 1024, rel=1e-12)
    # P(Bin(5, 0.9) <= 4) = 1 - 0.9**5
    assert binomial_cdf(4, 5, 0.9) == pytest.approx(1 - 0.9**5, rel=1e-12)
    assert binomial_cdf(-1, 5, 0.3) == 0.0 and binomial_cdf(5, 5, 0.3) == 1.0
    # no underflow in log space: P(Bin(2000, 0.99) <= 1950) is tiny but positive
    assert 0.0 < binomial_cdf(1950, 2000, 0.99) < 1e-6


@pytest.mark.parametrize(
    "n, ranks",
    [
        # P(Bin(6, .5) <= 0) = 1/64 = 0.0156 <= 0.025 -> j = 1: (x1, x6)
        (6, (1, 6)),
        # n=10: P(<=1) = 11/1024 = 0.0107 <= 0.025, P(<=2) = 56/1024 = 0.0547 > 0.025 -> j = 2
        (10, (2, 9)),
        # n=20: P(<=5) = 0.0207 <= 0.025, P(<=6) = 0.0577 -> j = 6: (x6, x15)
        (20, (6, 15)),
    ],
)
def test_median_ci_uses_the_binomial_order_statistics(n, ranks):
    values = [float(i) for i in range(1, n + 1)]
    assert median_ci(values, 0.95) == (float(ranks[0]), float(ranks[1]))


def test_median_ci_needs_six_samples_at_95_percent():
    assert median_ci([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) is None


@pytest.mark.parametrize(
    "n, q, expected",
    [
        # p90 at 99 %: need 1 - 0.9**n >= 0.99 -> n >= 44 before even x(n) qualifies
        (43, 0.90, None),
        (44, 0.90, 44.0),
        # n=50: P(Bin(50,.9) <= 48) = 1 - .9**50 - 50*.1*.9**49 = 0.966 < .99; <= 49: 0.9948
        (50, 0.90, 50.0),
        # p99 at 99 %: 1 - 0.99**n >= 0.99 -> n >= 459
        (458, 0.99, None),
        (459, 0.99, 459.0),
    ],
)
def test_early_stopping_bound(n, q, expected):
    values = [float(i) for i in range(1, n + 1)]
    assert quantile_upper_bound(values, q, 0.99) == expected


def test_early_stopping_bound_lies_above_the_plain_percentile():
    values = [float(i) for i in range(1, 1001)]
    bound = quantile_upper_bound(values, 0.90, 0.99)
    assert 900 < bound <= 930  # conservative, and not absurdly so


@pytest.mark.parametrize(
    "a, b, u, p",
    [
        ([1, 2, 3], [4, 5, 6], 0.0, 0.0808555983700523),
        ([1, 2, 2, 3], [2, 3, 4], 2.5, 0.2663799233424826),
    ],
)
def test_mann_whitney_matches_the_reference(a, b, u, p):
    got_u, got_p = mann_whitney(a, b)
    assert got_u == u
    assert got_p == pytest.approx(p, rel=1e-9)


def test_mann_whitney_is_symmetric_and_identical_samples_are_not_different():
    a, b = [1.0, 5.0, 2.0, 8.0], [3.0, 4.0, 9.0]
    assert mann_whitney(a, b)[1] == pytest.approx(mann_whitney(b, a)[1])
    assert mann_whitney(a, a)[1] == 1.0
    with pytest.raises(ValueError):
        mann_whitney([], [1.0])


def test_summary_carries_interval_and_bounds_once_the_sample_is_large_enough():
    samples = [i * 1000 for i in range(1, 1001)]  # 0.001 .. 1.0 ms
    summary = summarize_ns(samples)
    assert summary["median_ci_low_ms"] < summary["p50_ms"] < summary["median_ci_high_ms"]
    assert summary["p90_es_ms"] >= summary["p90_ms"] and summary["p99_es_ms"] >= summary["p99_ms"]
    assert summary["p999_ms"] == pytest.approx(0.999001, abs=1e-9)  # 0.001 + 998.001 * 0.001


def test_compare_calls_a_clear_shift_significant_and_noise_not():
    base = [1_000_000 + (i % 50) * 1_000 for i in range(500)]  # 1.000 .. 1.049 ms
    faster = [s - 200_000 for s in base]
    shifted = compare(base, faster)
    assert shifted.significant and shifted.change_pct == pytest.approx(-19.6, abs=0.2)
    assert "B is faster than A by 19." in shifted.verdict()
    same = compare(base, list(reversed(base)))
    assert not same.significant and same.p_value == 1.0
    assert "no significant difference" in same.verdict()
    assert math.isclose(same.change_pct, 0.0)
