"""Latency statistics, stdlib only, so results are reproducible to the last digit.

Part of the contract: the agent summarises a trial with it, and the controller compares
trials with it (`results compare`), so both sides compute the same numbers.

Percentiles use linear interpolation between closest ranks (numpy's default,
Hyndman & Fan type 7): for sorted x[0..n-1], p -> x[k] + (x[k+1]-x[k])*f where
k + f = (n - 1) * p / 100.
"""

from __future__ import annotations

import itertools
import math
from typing import Dict, Iterator, List, Optional, Sequence


def percentile(sorted_values: Sequence[float], p: float) -> float:
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside 0..100")
    position = (len(sorted_values) - 1) * p / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = position - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of an empty sample")
    return math.fsum(values) / len(values)


def stdev(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0.0 for a single value."""
    if len(values) < 2:
        return 0.0
    centre = mean(values)
    return math.sqrt(math.fsum((v - centre) ** 2 for v in values) / (len(values) - 1))


def summarize_ns(samples_ns: Sequence[int]) -> Dict[str, Optional[float]]:
    """Summary of latency samples given in nanoseconds, reported in milliseconds.

    Beyond the percentiles: a 95 % confidence interval for the median (of this run's
    samples: it says nothing of how another run would differ), MLPerf LoadGen's
    early-stopping estimates of p90 and p99 at 99 % confidence (`quantile_upper_bound`;
    None below 64 and 662 samples, as in LoadGen), and a robust spread (`robust_spread`).
    """
    if not samples_ns:
        raise ValueError("no samples to summarize")
    ms = sorted(s / 1e6 for s in samples_ns)
    centre = mean(ms)
    spread = stdev(ms)
    interval = median_ci(ms, 0.95)
    return {
        "n": len(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "mean_ms": centre,
        "stdev_ms": spread,
        "cv": spread / centre if centre > 0 else 0.0,
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "p999_ms": percentile(ms, 99.9),
        "median_ci_low_ms": interval[0] if interval else None,
        "median_ci_high_ms": interval[1] if interval else None,
        "p90_es_ms": quantile_upper_bound(ms, 0.90, 0.99),
        "p99_es_ms": quantile_upper_bound(ms, 0.99, 0.99),
        **robust_spread(ms),
    }


MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): the MAD of normal data times this is its sigma


def robust_spread(sorted_ms: Sequence[float]) -> Dict[str, float]:
    """Spread that a few hiccups cannot inflate: the interquartile range, the median absolute
    deviation, and robust_cv = 1.4826 x MAD / median (equal to the CV for normal data). One
    52 ms stall among 15,000 samples of 12 us makes the plain CV 27; it leaves these alone."""
    centre = percentile(sorted_ms, 50)
    deviations = sorted(abs(v - centre) for v in sorted_ms)
    mad = percentile(deviations, 50)
    return {
        "iqr_ms": percentile(sorted_ms, 75) - percentile(sorted_ms, 25),
        "mad_ms": mad,
        "robust_cv": MAD_TO_SIGMA * mad / centre if centre > 0 else 0.0,
    }


def throughput(samples_ns: Sequence[int], batch_size: int) -> float:
    """Inferences (items) per second over the measured runs."""
    total_ns = sum(samples_ns)
    if total_ns <= 0:
        raise ValueError("total measured time is zero")
    return len(samples_ns) * batch_size * 1e9 / total_ns


# -- confidence and significance (order statistics and ranks; no distribution assumed) --


def _binomial_pmfs(n: int, p: float) -> Iterator[float]:
    """P(X = 0), P(X = 1), ... for X ~ Binomial(n, p), each computed in log space."""
    log_p, log_q = math.log(p), math.log1p(-p)
    log_n_fact = math.lgamma(n + 1)
    for i in range(n + 1):
        yield math.exp(
            log_n_fact - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        )


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed exactly in log space (no underflow)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return min(math.fsum(itertools.islice(_binomial_pmfs(n, p), k + 1)), 1.0)


def binomial_cdfs(n: int, p: float, k_max: int) -> List[float]:
    """P(X <= k) for k = 0 .. k_max, X ~ Binomial(n, p), in one walk of the pmf (each
    binomial_cdf call walks it again: O(n) per rank, O(n^2) for a search over ranks)."""
    return list(itertools.accumulate(itertools.islice(_binomial_pmfs(n, p), k_max + 1)))


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _smallest_rank_with_cdf_above(n: int, p: float, target: float) -> int | None:
    """Smallest r in 0..n with P(Bin(n, p) <= r) > target, walking the pmf once."""
    total = 0.0
    for r, pmf in enumerate(_binomial_pmfs(n, p)) if n else ():
        total += pmf
        if total > target:
            return r
    return None


def median_ci(
    sorted_values: Sequence[float], confidence: float = 0.95
) -> tuple[float, float] | None:
    """Distribution-free confidence interval for the median: order statistics x(j), x(n-j+1)
    (1-based) with the largest j such that P(Bin(n, 1/2) <= j - 1) <= (1 - confidence) / 2.
    None when the sample is too small for that confidence (n < 6 at 95 %)."""
    n = len(sorted_values)
    alpha = (1.0 - confidence) / 2.0
    r = _smallest_rank_with_cdf_above(n, 0.5, alpha)  # P(Bin <= r) > alpha, P(Bin <= r-1) <= alpha
    if r is None or r < 1:
        return None
    j = r  # P(Bin <= j - 1) <= alpha
    return sorted_values[j - 1], sorted_values[n - j]


def early_stopping_rank(n: int, q: float, confidence: float = 0.99) -> int | None:
    """0-based index, in n ascending-sorted samples, of MLPerf LoadGen's early-stopping
    estimate of the q-quantile (SingleStream), or None when n is too small for one.

    LoadGen (loadgen/early_stopping.cc, results.cc) calls a run of h + t queries, t of them
    over the latency bound, good enough when the odds of seeing at most t over-latency
    queries, if the true q-quantile were the bound, fall strictly below 1 - confidence:
    P(Bin(h + t, 1 - q) <= t) < 1 - confidence (tolerance d = 0). With MinPassing(t) the
    least such h, it needs n >= MinPassing(1) + 1 queries, then takes the largest t >= 1 with
    MinPassing(t) + t <= n, and reports x[n - t]: it discards the t - 1 highest latencies.
    P(Bin(m, 1 - q) <= t) falls strictly as m grows, so MinPassing(t) + t <= n exactly when
    P(Bin(n, 1 - q) <= t) < 1 - confidence: t is one less than the first point where the
    CDF of Bin(n, 1 - q) reaches 1 - confidence, found by one walk up that CDF from 0,
    O(n (1 - q)) terms, each in log space (a few ms for 100,000 samples at q = 0.9).
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile {q} outside (0, 1)")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} outside (0, 1)")
    if n < 2:
        return None
    alpha = 1.0 - confidence  # as LoadGen computes it: odds must be < 1 - c
    # Neumaier-compensated running sum of P(Bin(n, 1 - q) = 0), P(= 1), ...
    total = 0.0
    compensation = 0.0
    for r, pmf in enumerate(_binomial_pmfs(n, 1.0 - q)):
        partial = total + pmf
        if abs(total) >= abs(pmf):
            compensation += (total - partial) + pmf
        else:
            compensation += (pmf - partial) + total
        total = partial
        if total + compensation >= alpha:  # P(Bin(n, 1 - q) <= r) >= 1 - c: t = r - 1
            return n - (r - 1) if r >= 2 else None
    return None  # unreachable: the CDF reaches 1 at r = n


def quantile_upper_bound(
    sorted_values: Sequence[float], q: float, confidence: float = 0.99
) -> float | None:
    """MLPerf LoadGen's early-stopping estimate of the q-quantile (0 < q < 1) of ascending
    `sorted_values`, the SingleStream one, order statistic for order statistic (see
    `early_stopping_rank`): None when LoadGen would say "Need to process at least N
    queries" (for q = 0.9 at 99 %: n < 64; q = 0.99: n < 662)."""
    rank = early_stopping_rank(len(sorted_values), q, confidence)
    return None if rank is None else sorted_values[rank]


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mann-Whitney U test: (U of `a`, two-sided p-value), normal approximation with tie
    and continuity correction; meant for the hundreds-to-thousands of samples of a trial."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney needs two non-empty samples")
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    rank_sum_a = 0.0
    tie_term = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        average_rank = (i + j) / 2.0 + 1.0
        size = j - i + 1
        tie_term += size**3 - size
        rank_sum_a += average_rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u_a = rank_sum_a - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    mean_u = n1 * n2 / 2.0
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return u_a, 1.0
    z = (abs(u_a - mean_u) - 0.5) / math.sqrt(variance)
    return u_a, min(1.0, 2.0 * (1.0 - _normal_cdf(max(z, 0.0))))
