"""Confidence intervals, early-stopping estimates and the Mann-Whitney test: exact values.

Reference values were computed by hand (binomial sums written out below) or, for the
Mann-Whitney p-values, once with scipy.stats.mannwhitneyu(method="asymptotic",
use_continuity=True), which uses the same normal approximation with tie correction.
"""

from __future__ import annotations

import math
import time

import pytest

from agents.contract.statistics import (
    binomial_cdf,
    early_stopping_rank,
    mann_whitney,
    median_ci,
    percentile,
    quantile_upper_bound,
    summarize_ns,
)


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


# -- early stopping: MLPerf LoadGen's estimate (loadgen/early_stopping.cc, results.cc) --
#
# LoadGen, SingleStream, confidence c = 0.99, tolerance 0: with q the percentile,
#   odds(h, t) = P(Bin(h + t, 1 - q) <= t)       (at most t over-latency queries in h + t)
#   MinPassing(t) = least h with odds(h, t) < 1 - c
#   no estimate while n < MinPassing(1) + 1; else t = largest i >= 1 such that
#   MinPassing(j) + j <= n for all j <= i, and the estimate is x[n - t] (0-based,
#   ascending): the t - 1 highest latencies are discarded.
# The reference below follows that text literally, in exact integer arithmetic with
# q = a/b: odds < 1/100  <=>  100 * sum_k C(h+t, k) (b-a)^k a^(h+t-k) < b^(h+t).


def _odds_below_one_percent(h: int, t: int, a: int, b: int) -> bool:
    m = h + t
    over = sum(math.comb(m, k) * (b - a) ** k * a ** (m - k) for k in range(t + 1))
    return 100 * over < b**m


_MIN_PASSING: dict = {}


def _min_passing(t: int, a: int, b: int) -> int:
    if (t, a, b) not in _MIN_PASSING:
        # MinPassing is non-decreasing in t: Bin(m + 1) <= Bin(m) + 1, so
        # odds(h, t) >= odds(h, t - 1), and an h failing at t - 1 fails at t too
        h = _min_passing(t - 1, a, b) if t > 1 else 1
        while not _odds_below_one_percent(h, t, a, b):
            h += 1
        _MIN_PASSING[t, a, b] = h
    return _MIN_PASSING[t, a, b]


def loadgen_reference_rank(n: int, a: int, b: int):
    if n < _min_passing(1, a, b) + 1:
        return None  # "Need to process at least MinPassing(1) + 1 queries"
    t = 1
    for i in range(2, n + 1):
        if n < _min_passing(i, a, b) + i:
            t = i - 1
            break
    return n - t


@pytest.mark.parametrize(
    "n, q, expected",
    [
        # p90: P(Bin(63, .1) <= 1) = .9**63 + 63 * .1 * .9**62 = 0.01048 >= .01, but
        # P(Bin(64, .1) <= 1) = 0.00956 < .01: MinPassing(1) = 63, LoadGen needs 64 queries
        # ("Need to process at least 64 queries"), and at 64 discards none: x[63], the max.
        (43, 0.90, None),
        (50, 0.90, None),
        (63, 0.90, None),
        (64, 0.90, 64.0),
        # n=100: P(Bin(100, .1) <= 3) = 0.00784 < .01 <= P(<= 4) = 0.0237, so t = 3:
        # x[97] = 98.0, two highest discarded.
        (100, 0.90, 98.0),
        # p99: P(Bin(661, .01) <= 1) = 0.0100010 >= .01, P(Bin(662, .01) <= 1) = 0.00991:
        # MinPassing(1) = 661, LoadGen needs 662 queries ("would need to process at least
        # 662 total queries"); at 662, x[661], the max. (ceil(log .01 / log .99) = 459 is
        # MinPassing(0), LoadGen's search seed, not a threshold: SingleStream needs t >= 1.)
        (458, 0.99, None),
        (460, 0.99, None),
        (661, 0.99, None),
        (662, 0.99, 662.0),
        # n=1000, p99: P(Bin(1000, .01) <= 2) = 0.00268 < .01 <= P(<= 3) = 0.01007: t = 2,
        # x[998] = 999.0.
        (1000, 0.99, 999.0),
    ],
)
def test_early_stopping_bound(n, q, expected):
    values = [float(i) for i in range(1, n + 1)]
    assert quantile_upper_bound(values, q, 0.99) == expected


def test_early_stopping_minimum_counts_are_loadgens():
    assert early_stopping_rank(63, 0.90) is None and early_stopping_rank(64, 0.90) == 63
    assert early_stopping_rank(661, 0.99) is None and early_stopping_rank(662, 0.99) == 661
    assert _min_passing(1, 9, 10) + 1 == 64 and _min_passing(1, 99, 100) + 1 == 662
    # the t = 0 count, 0.99**459 = 0.00992 < .01 <= 0.99**458 = 0.01002: 459 queries
    assert _odds_below_one_percent(459, 0, 99, 100)
    assert not _odds_below_one_percent(458, 0, 99, 100)


def test_early_stopping_rank_follows_loadgens_definition_exactly():
    for n in range(1, 701):
        assert early_stopping_rank(n, 0.90) == loadgen_reference_rank(n, 9, 10), n
    for n in [*range(640, 700), 1000, 1500]:
        assert early_stopping_rank(n, 0.99) == loadgen_reference_rank(n, 99, 100), n
    # the median: P(Bin(h + 1, .5) <= 1) = (h + 2) / 2**(h + 1) is 11/1024 at h = 9 and
    # 12/2048 < .01 at h = 10, so 11 queries are needed
    assert early_stopping_rank(10, 0.5) is None and early_stopping_rank(11, 0.5) == 10
    for n in (1, 2, 10, 11, 12, 20, 50):
        assert early_stopping_rank(n, 0.5) == loadgen_reference_rank(n, 1, 2), n


def test_early_stopping_bound_lies_above_the_plain_percentile():
    values = [float(i) for i in range(1, 1001)]
    # P(Bin(1000, .1) <= 78) = 0.00987 < .01 <= P(<= 79) = 0.01327: t = 78, x[922] = 923.0
    assert quantile_upper_bound(values, 0.90, 0.99) == 923.0
    assert percentile(values, 90) < 923.0


def test_early_stopping_is_fast_on_a_large_trial():
    samples = [1_000_000 + (i * 7919) % 100_000 for i in range(100_000)]
    started = time.perf_counter()
    summary = summarize_ns(samples)
    assert time.perf_counter() - started < 1.0
    assert summary["p90_es_ms"] is not None and summary["p99_es_ms"] is not None
    # LoadGen's own early_stopping.cc (compiled, driven like results.cc) takes t = 9779
    # at n = 100,000 for p90 and t = 927 for p99
    assert early_stopping_rank(100_000, 0.90) == 100_000 - 9_779
    assert early_stopping_rank(100_000, 0.99) == 100_000 - 927


def test_early_stopping_rejects_bad_arguments():
    with pytest.raises(ValueError):
        quantile_upper_bound([1.0, 2.0], 1.0)
    with pytest.raises(ValueError):
        early_stopping_rank(10, 0.9, 1.0)


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
