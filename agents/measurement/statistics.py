"""Latency statistics, stdlib only, so results are reproducible to the last digit.

Percentiles use linear interpolation between closest ranks (numpy's default,
Hyndman & Fan type 7): for sorted x[0..n-1], p -> x[k] + (x[k+1]-x[k])*f where
k + f = (n - 1) * p / 100.
"""

from __future__ import annotations

import math
from typing import Dict, Sequence


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


def summarize_ns(samples_ns: Sequence[int]) -> Dict[str, float]:
    """Summary of latency samples given in nanoseconds, reported in milliseconds."""
    if not samples_ns:
        raise ValueError("no samples to summarize")
    ms = sorted(s / 1e6 for s in samples_ns)
    centre = mean(ms)
    spread = stdev(ms)
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
    }


def throughput(samples_ns: Sequence[int], batch_size: int) -> float:
    """Inferences (items) per second over the measured runs."""
    total_ns = sum(samples_ns)
    if total_ns <= 0:
        raise ValueError("total measured time is zero")
    return len(samples_ns) * batch_size * 1e9 / total_ns
