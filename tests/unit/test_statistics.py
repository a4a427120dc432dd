"""agents.contract.statistics: exact values computed by hand, then a numpy cross-check.

Percentiles are numpy's default (Hyndman & Fan type 7): for sorted x[0..n-1] and p in
0..100, position = (n - 1) * p / 100 = k + f, value = x[k] + (x[k+1] - x[k]) * f.
Values that are not exact binary fractions (3.7, 3.85, ...) are compared to within
1e-12, far below any real difference between two formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.contract.statistics import mean, percentile, stdev, summarize_ns, throughput

EXACT = 1e-12

# x = [1, 2, 3, 4], n - 1 = 3:
#   p0   -> position 0.00 -> 1
#   p25  -> position 0.75 -> 1 + (2-1)*0.75 = 1.75
#   p50  -> position 1.50 -> 2 + (3-2)*0.50 = 2.5
#   p90  -> position 2.70 -> 3 + (4-3)*0.70 = 3.7
#   p95  -> position 2.85 -> 3 + (4-3)*0.85 = 3.85
#   p99  -> position 2.97 -> 3 + (4-3)*0.97 = 3.97
#   p100 -> position 3.00 -> 4
FOUR = [1.0, 2.0, 3.0, 4.0]
FOUR_PERCENTILES = [(0, 1.0), (25, 1.75), (50, 2.5), (90, 3.7), (95, 3.85), (99, 3.97), (100, 4.0)]

# x = [10, 20, 30, 40, 50], n - 1 = 4:
#   p25 -> position 1.00 -> 20 (an exact rank, no interpolation)
#   p50 -> position 2.00 -> 30
#   p90 -> position 3.60 -> 40 + 10*0.60 = 46
#   p95 -> position 3.80 -> 40 + 10*0.80 = 48
#   p99 -> position 3.96 -> 40 + 10*0.96 = 49.6
FIVE = [10.0, 20.0, 30.0, 40.0, 50.0]
FIVE_PERCENTILES = [
    (0, 10.0),
    (25, 20.0),
    (50, 30.0),
    (90, 46.0),
    (95, 48.0),
    (99, 49.6),
    (100, 50.0),
]

# stdev of [1, 2, 3, 4]: mean 2.5, squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5,
# sample variance 5 / (4 - 1) = 5/3, stdev sqrt(5/3) = 1.2909944487358056...
FOUR_STDEV = math.sqrt(5 / 3)


@pytest.mark.parametrize(("p", "expected"), FOUR_PERCENTILES)
def test_percentile_of_four_values(p, expected):
    assert percentile(FOUR, p) == pytest.approx(expected, abs=EXACT)


@pytest.mark.parametrize(("p", "expected"), FIVE_PERCENTILES)
def test_percentile_of_five_values(p, expected):
    assert percentile(FIVE, p) == pytest.approx(expected, abs=EXACT)


def test_percentile_exact_binary_values_are_bit_exact():
    # 1.75 and 2.5 are exact binary fractions: no tolerance at all.
    assert percentile(FOUR, 25) == 1.75
    assert percentile(FOUR, 50) == 2.5
    assert percentile(FIVE, 50) == 30.0


def test_percentile_of_two_values_interpolates_linearly():
    # position = 1 * p / 100, so p10 of [0, 8] is 0.8 and p50 is 4.
    assert percentile([0.0, 8.0], 50) == 4.0
    assert percentile([0.0, 8.0], 10) == pytest.approx(0.8, abs=EXACT)


def test_percentile_of_a_single_sample_is_that_sample():
    for p in (0, 1, 50, 99, 100):
        assert percentile([7.25], p) == 7.25


def test_percentile_of_an_empty_sample_raises():
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)


@pytest.mark.parametrize("p", [-0.001, -1, 100.001, 101, 1e9])
def test_percentile_outside_0_to_100_raises(p):
    with pytest.raises(ValueError, match="outside 0..100"):
        percentile(FOUR, p)


def test_mean_exact():
    assert mean(FOUR) == 2.5
    assert mean(FIVE) == 30.0
    assert mean([5.0]) == 5.0
    # fsum: 0.1 * 10 sums to exactly 1.0, a naive left-to-right sum gives 0.9999999999999999
    assert mean([0.1] * 10) == 0.1


def test_mean_of_an_empty_sample_raises():
    with pytest.raises(ValueError):
        mean([])


def test_stdev_is_the_sample_standard_deviation():
    assert stdev(FOUR) == pytest.approx(FOUR_STDEV, abs=EXACT)
    # [10..50]: squared deviations 400+100+0+100+400 = 1000, / 4 = 250, sqrt = 15.811...
    assert stdev(FIVE) == pytest.approx(math.sqrt(250), abs=EXACT)
    # not the population stdev (n), which would be sqrt(5/4) = 1.118...
    assert stdev(FOUR) != pytest.approx(math.sqrt(5 / 4))


def test_stdev_of_a_single_value_is_zero():
    assert stdev([3.0]) == 0.0


def test_stdev_of_identical_values_is_zero():
    assert stdev([2.0, 2.0, 2.0]) == 0.0


def test_summarize_ns_converts_to_milliseconds_and_sorts():
    # 4, 1, 3, 2 ms given unsorted: the summary must sort before taking percentiles.
    summary = summarize_ns([4_000_000, 1_000_000, 3_000_000, 2_000_000])
    assert set(summary) == {
        "n",
        "min_ms",
        "max_ms",
        "mean_ms",
        "stdev_ms",
        "cv",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "p999_ms",
        "median_ci_low_ms",
        "median_ci_high_ms",
        "p90_es_ms",
        "p99_es_ms",
        "iqr_ms",
        "mad_ms",
        "robust_cv",
    }
    # Four samples support neither a 95 % median interval nor a 99 % tail bound.
    assert summary["median_ci_low_ms"] is None and summary["p90_es_ms"] is None
    assert summary["n"] == 4
    assert summary["min_ms"] == 1.0
    assert summary["max_ms"] == 4.0
    assert summary["mean_ms"] == 2.5
    assert summary["stdev_ms"] == pytest.approx(FOUR_STDEV, abs=EXACT)
    # cv = stdev / mean = sqrt(5/3) / 2.5 = 0.5163977794943222...
    assert summary["cv"] == pytest.approx(FOUR_STDEV / 2.5, abs=EXACT)
    assert summary["p50_ms"] == 2.5
    assert summary["p90_ms"] == pytest.approx(3.7, abs=EXACT)
    assert summary["p95_ms"] == pytest.approx(3.85, abs=EXACT)
    assert summary["p99_ms"] == pytest.approx(3.97, abs=EXACT)
    # Robust spread: quartiles 1.75 and 3.25 (type 7); |x - 2.5| = 1.5, 0.5, 0.5, 1.5 has
    # median 1.0; robust_cv = 1.4826 x 1.0 / 2.5.
    assert summary["iqr_ms"] == pytest.approx(1.5, abs=EXACT)
    assert summary["mad_ms"] == pytest.approx(1.0, abs=EXACT)
    assert summary["robust_cv"] == pytest.approx(1.4826 / 2.5, abs=EXACT)


def test_summarize_ns_keeps_sub_millisecond_resolution():
    # 1500 ns = 0.0015 ms, 2500 ns = 0.0025 ms
    summary = summarize_ns([1_500, 2_500])
    assert summary["min_ms"] == pytest.approx(0.0015, abs=EXACT)
    assert summary["max_ms"] == pytest.approx(0.0025, abs=EXACT)
    assert summary["p50_ms"] == pytest.approx(0.002, abs=EXACT)


def test_summarize_ns_single_sample():
    summary = summarize_ns([5_000_000])
    assert summary["n"] == 1
    for key in ("min_ms", "max_ms", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms"):
        assert summary[key] == 5.0, key
    assert summary["stdev_ms"] == 0.0
    assert summary["cv"] == 0.0


def test_summarize_ns_empty_raises():
    with pytest.raises(ValueError):
        summarize_ns([])


def test_throughput_counts_items_per_second():
    # 4 runs of 1 ms at batch 1: 4 items in 4 ms = 1000 items/s
    assert throughput([1_000_000] * 4, 1) == 1000.0
    # the same runs at batch 8: 32 items in 4 ms = 8000 items/s
    assert throughput([1_000_000] * 4, 8) == 8000.0
    # 3 runs of batch 2 (6 items) in 2 + 3 + 5 = 10 ms = 600 items/s
    assert throughput([2_000_000, 3_000_000, 5_000_000], 2) == pytest.approx(600.0, abs=1e-9)


def test_throughput_without_measured_time_raises():
    with pytest.raises(ValueError):
        throughput([], 1)
    with pytest.raises(ValueError):
        throughput([0, 0], 1)


# --- cross-check against numpy ---------------------------------------------------------


def _close(ours: float, theirs: float, scale: float) -> bool:
    return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-9 * max(scale, 1.0))


def test_percentile_matches_numpy_on_seeded_random_latencies():
    rng = np.random.default_rng(20261125)
    data = rng.lognormal(mean=1.0, sigma=0.5, size=1001)
    ordered = sorted(float(v) for v in data)
    for p in (0, 0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100):
        expected = float(np.percentile(data, p))
        assert _close(percentile(ordered, p), expected, max(ordered)), p


def test_summarize_ns_matches_numpy():
    rng = np.random.default_rng(7)
    samples = [int(v) for v in rng.integers(50_000, 5_000_000, size=500)]
    summary = summarize_ns(samples)
    ms = np.array(samples) / 1e6
    assert summary["mean_ms"] == pytest.approx(float(ms.mean()), rel=1e-12)
    assert summary["stdev_ms"] == pytest.approx(float(ms.std(ddof=1)), rel=1e-12)
    for p in (50, 90, 95, 99):
        assert summary[f"p{p}_ms"] == pytest.approx(float(np.percentile(ms, p)), rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=60,
    ),
    p=st.floats(min_value=0, max_value=100, allow_nan=False),
)
def test_percentile_property_matches_numpy(values, p):
    ordered = sorted(values)
    scale = max(abs(v) for v in values)
    ours = percentile(ordered, p)
    theirs = float(np.percentile(np.array(values), p))
    assert _close(ours, theirs, scale), (ours, theirs)
    slack = 1e-9 * max(scale, 1.0)
    assert ordered[0] - slack <= ours <= ordered[-1] + slack
