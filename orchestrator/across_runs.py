"""A configuration's figures across its runs, and whether two configurations differ.

A run is one trial: a fresh process with its own warm-up and its own measurement. The
samples of one run are not independent draws of the configuration's latency: the process,
its memory layout, clocks and neighbours change between runs, and one run never samples
that. Measured here, identical configurations back to back had run medians 1.8x apart while
each run's own 95 % interval of its median was under +-0.5 %. So a configuration's figure is
computed across runs (the median of the run medians, an interval of it from the runs, the
between-run coefficient of variation), and a verdict compares run medians with run medians.

The test is an exact two-sided Mann-Whitney test over run medians (a permutation test of
their ranks: its false-positive rate is what it says whatever the distribution, given runs
that are exchangeable, which interleaving them makes them). The effect is the
Hodges-Lehmann estimate of the ratio B/A with its distribution-free interval. Stdlib only.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from agents.contract import statistics

ALPHA = 0.05  # a verdict's false-positive rate
PRACTICAL_PCT = 2.0  # a difference smaller than this is not called one, however sure
MIN_RUNS = 3  # fewer runs than this on either side: no verdict
EXACT_LIMIT = 40  # runs in all up to which the test is exact; beyond, a normal approximation


def median_interval(values: Sequence[float], confidence: float = 0.95) -> Optional[Dict]:
    """A distribution-free interval of the median of `values` (run medians): the order
    statistics x(j), x(n+1-j) with the largest j whose coverage, 1 - 2 P(Bin(n, 1/2) <= j-1),
    is at least `confidence`. With too few runs for that (n < 6 at 95 %) it is the range
    x(1), x(n), and its coverage says how sure it is (n = 5: 93.8 %). None below 2 runs."""
    n = len(values)
    if n < 2:
        return None
    ordered = sorted(values)
    j, coverage = _interval_rank(n, confidence)
    return {"low": ordered[j - 1], "high": ordered[n - j], "coverage": coverage}


@functools.lru_cache(maxsize=4096)
def _interval_rank(n: int, confidence: float) -> Tuple[int, float]:
    """median_interval's j and its coverage for n runs: the same for every configuration
    with n runs (a page of hundreds of configurations asks for a few values of n)."""
    cdf = statistics.binomial_cdfs(n, 0.5, n // 2)  # cdf[k] = P(Bin(n, 1/2) <= k)
    j = 1
    while j + 1 <= n // 2 and 1 - 2 * cdf[j] >= confidence:
        j += 1
    return j, 1 - 2 * cdf[j - 1]


def _median(values: Sequence[float]) -> float:
    return statistics.percentile(sorted(values), 50)


def between_run_cv(values: Sequence[float]) -> Optional[float]:
    """Sample standard deviation of the run medians over their mean (None below 2 runs)."""
    if len(values) < 2:
        return None
    centre = statistics.mean(values)
    return statistics.stdev(values) / centre if centre > 0 else None


def configuration_figures(run_p50s_ms: Sequence[float]) -> Dict[str, Optional[float]]:
    """The configuration's latency across its runs: runs, median of run medians, its
    interval (with coverage) and the between-run CV."""
    interval = median_interval(run_p50s_ms)
    return {
        "runs": len(run_p50s_ms),
        "p50_ms": _median(run_p50s_ms) if run_p50s_ms else None,
        "p50_low_ms": interval["low"] if interval else None,
        "p50_high_ms": interval["high"] if interval else None,
        "p50_interval_coverage": interval["coverage"] if interval else None,
        "between_run_cv": between_run_cv(run_p50s_ms),
    }


# -- the exact test ------------------------------------------------------------------


def _doubled_midranks(pooled: Sequence[float]) -> List[int]:
    """Ranks (1-based, ties share their mean rank) of `pooled`, doubled to stay integers."""
    order = sorted(range(len(pooled)), key=lambda i: pooled[i])
    ranks = [0] * len(pooled)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and pooled[order[j + 1]] == pooled[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = i + j + 2  # 2 x the mean of ranks i+1 .. j+1
        i = j + 1
    return ranks


def _rank_sum_counts(ranks: Sequence[int], m: int) -> Dict[int, int]:
    """How many ways each rank sum arises when m of `ranks` are drawn (order ignored)."""
    table: List[Dict[int, int]] = [dict() for _ in range(m + 1)]
    table[0][0] = 1
    for rank in ranks:
        for taken in range(m, 0, -1):
            below = table[taken - 1]
            row = table[taken]
            for total, ways in below.items():
                row[total + rank] = row.get(total + rank, 0) + ways
    return table[m]


def exact_mann_whitney_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney test, exact (the permutation distribution of
    a's rank sum, ties included) up to EXACT_LIMIT values, a normal approximation beyond."""
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        raise ValueError("the test needs runs on both sides")
    ranks = _doubled_midranks(list(a) + list(b))
    observed = sum(ranks[:m])
    expected = m * (m + n + 1)  # doubled mean rank sum
    if m + n > EXACT_LIMIT:
        return statistics.mann_whitney(a, b)[1]
    counts = _rank_sum_counts(ranks, m)
    extreme = sum(
        w for total, w in counts.items() if abs(total - expected) >= abs(observed - expected)
    )
    return min(1.0, extreme / math.comb(m + n, m))


def smallest_p(m: int, n: int) -> float:
    """The smallest two-sided p-value m and n runs can give: 2 / C(m+n, m)."""
    return min(1.0, 2.0 / math.comb(m + n, m))


def _u_cdf(m: int, n: int) -> List[float]:
    """P(U <= u) for u = 0 .. m*n, U the Mann-Whitney statistic without ties."""
    counts = _rank_sum_counts(list(range(1, m + n + 1)), m)
    offset = m * (m + 1) // 2
    total = math.comb(m + n, m)
    cdf, running = [], 0
    for u in range(m * n + 1):
        running += counts.get(u + offset, 0)
        cdf.append(running / total)
    return cdf


def hodges_lehmann_ratio(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> Tuple[float, Optional[Tuple[float, float]], Optional[float]]:
    """B/A as the Hodges-Lehmann estimate on logs (the median of all log(b) - log(a)),
    with the distribution-free interval from the Mann-Whitney distribution:
    (ratio, (low, high) or None, the interval's coverage or None)."""
    diffs = sorted(math.log(y) - math.log(x) for x in a for y in b)
    ratio = math.exp(_median(diffs))
    m, n = len(a), len(b)
    if m + n > EXACT_LIMIT:
        return ratio, None, None
    cdf = _u_cdf(m, n)
    k = 0  # the interval drops the k smallest and k largest differences
    while k + 1 <= len(diffs) // 2 and 1 - 2 * cdf[k] >= confidence:
        k += 1
    if k == 0:
        return ratio, None, None
    coverage = 1 - 2 * cdf[k - 1]
    return ratio, (math.exp(diffs[k - 1]), math.exp(diffs[len(diffs) - k])), coverage


@dataclass(frozen=True)
class RunComparison:
    """B against A from their run medians (ms)."""

    runs_a: int
    runs_b: int
    p50_a_ms: float
    p50_b_ms: float
    change_pct: float  # Hodges-Lehmann B/A - 1, in %; negative: B is faster
    interval_pct: Optional[Tuple[float, float]]
    interval_coverage: Optional[float]
    p_value: Optional[float]
    alpha: float = ALPHA
    practical_pct: float = PRACTICAL_PCT

    @property
    def decidable(self) -> bool:
        return self.p_value is not None

    @property
    def significant(self) -> bool:
        return (
            self.p_value is not None
            and self.p_value < self.alpha
            and abs(self.change_pct) >= self.practical_pct
        )

    def verdict(self) -> str:
        medians = f"median of run medians {self.p50_a_ms:.4g} → {self.p50_b_ms:.4g} ms"
        if not self.decidable:
            return (
                f"not enough runs to tell ({self.runs_a} and {self.runs_b} runs; the smallest "
                f"p-value they can give is {smallest_p(self.runs_a, self.runs_b):.3g}, not below "
                f"α = {self.alpha}: measure each with policy.runs of 4 or more, 5 by default)"
            )
        direction = "faster" if self.change_pct < 0 else "slower"
        effect = f"{abs(self.change_pct):.1f} %"
        if self.interval_pct is not None:
            effect += (
                f" ({self.interval_coverage * 100:.0f} % interval of the change "
                f"{self.interval_pct[0]:+.1f} % to {self.interval_pct[1]:+.1f} %)"
            )
        if self.significant:
            return f"B is {direction} than A by {effect}, {medians}: a real difference"
        if self.p_value < self.alpha:
            return (
                f"B differs from A by {effect}, below the {self.practical_pct:g} % that counts "
                f"as a difference ({medians}): no practical difference"
            )
        return f"no difference found: change {self.change_pct:+.1f} %, {medians}"


def compare_runs(
    a_p50s_ms: Sequence[float],
    b_p50s_ms: Sequence[float],
    alpha: float = ALPHA,
    practical_pct: float = PRACTICAL_PCT,
) -> RunComparison:
    """Is B different from A, judged across runs (each value one run's median)?"""
    if not a_p50s_ms or not b_p50s_ms:
        raise ValueError("both configurations need at least one measured run")
    if min(a_p50s_ms) <= 0 or min(b_p50s_ms) <= 0:
        raise ValueError("run medians must be positive")
    m, n = len(a_p50s_ms), len(b_p50s_ms)
    ratio, interval, coverage = hodges_lehmann_ratio(a_p50s_ms, b_p50s_ms, 1 - alpha)
    enough = m >= MIN_RUNS and n >= MIN_RUNS and smallest_p(m, n) < alpha
    return RunComparison(
        runs_a=m,
        runs_b=n,
        p50_a_ms=_median(a_p50s_ms),
        p50_b_ms=_median(b_p50s_ms),
        change_pct=(ratio - 1) * 100.0,
        interval_pct=((interval[0] - 1) * 100.0, (interval[1] - 1) * 100.0) if interval else None,
        interval_coverage=coverage,
        p_value=exact_mann_whitney_p(a_p50s_ms, b_p50s_ms) if enough else None,
        alpha=alpha,
        practical_pct=practical_pct,
    )
