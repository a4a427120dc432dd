"""Figures and verdicts across runs, checked against scipy's answers and by simulation."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from agents.contract import statistics
from orchestrator import across_runs
from orchestrator.across_runs import (
    compare_runs,
    configuration_figures,
    exact_mann_whitney_p,
    hodges_lehmann_ratio,
    median_interval,
    smallest_p,
)


@pytest.mark.parametrize("seed", range(12))
def test_exact_p_equals_scipys_exact_mann_whitney(seed):
    rng = random.Random(seed)
    m, n = rng.randint(3, 9), rng.randint(3, 9)
    shift = rng.choice([1.0, 1.05, 1.2])
    a = [rng.lognormvariate(0, 0.1) for _ in range(m)]
    b = [rng.lognormvariate(0, 0.1) * shift for _ in range(n)]
    expected = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue
    assert exact_mann_whitney_p(a, b) == pytest.approx(expected, rel=1e-12)


def test_exact_p_with_ties_equals_scipys_permutation_test_of_the_rank_sum():
    a, b = [1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0, 5.0]
    ranks = stats.rankdata(a + b)

    def rank_sum_distance(x, y):  # noqa: ANN001
        return abs(sum(x) - len(x) * (len(x) + len(y) + 1) / 2)

    expected = stats.permutation_test(
        (ranks[: len(a)], ranks[len(a) :]),
        rank_sum_distance,
        permutation_type="independent",
        alternative="greater",
        n_resamples=math.inf,
    ).pvalue
    assert exact_mann_whitney_p(a, b) == pytest.approx(expected, rel=1e-12)


def test_smallest_p_decides_how_many_runs_a_verdict_needs():
    assert smallest_p(3, 3) == pytest.approx(0.1)  # 3 + 3 runs can never reach 0.05
    assert smallest_p(4, 4) == pytest.approx(2 / 70)
    assert smallest_p(5, 5) == pytest.approx(2 / 252)
    verdict = compare_runs([1.0, 1.01, 0.99], [2.0, 2.01, 1.99])
    assert verdict.p_value is None and not verdict.significant
    assert verdict.verdict().startswith("not enough runs to tell (3 and 3 runs")
    clear = compare_runs([1.0, 1.01, 0.99, 1.02], [2.0, 2.01, 1.99, 2.02])
    assert clear.significant and clear.p_value == pytest.approx(2 / 70)


def test_hodges_lehmann_ratio_and_its_interval_match_a_direct_computation():
    a = [10.0, 10.4, 9.8, 10.1, 10.2]
    b = [11.0, 11.3, 10.9, 11.2, 10.8]
    ratio, interval, coverage = hodges_lehmann_ratio(a, b, 0.95)
    diffs = sorted(math.log(y / x) for x in a for y in b)
    assert ratio == pytest.approx(math.exp(diffs[12]))  # the 13th of 25: the median
    # 5 vs 5: P(U <= 2) = 4/252 <= 0.025 < P(U <= 3) = 7/252, so 3 dropped at each end.
    assert interval == pytest.approx((math.exp(diffs[2]), math.exp(diffs[22])))
    assert coverage == pytest.approx(1 - 2 * 4 / 252)


def test_median_interval_is_distribution_free_with_its_coverage_said():
    five = median_interval([5, 1, 4, 2, 3])
    assert (five["low"], five["high"]) == (1, 5) and five["coverage"] == pytest.approx(1 - 2 / 32)
    # 10 runs: x(2)..x(9) covers 1 - 2 * P(Bin(10, 1/2) <= 1) = 0.9785; x(3)..x(8) only 0.891
    ten = median_interval(list(range(1, 11)))
    assert (ten["low"], ten["high"]) == (2, 9)
    assert ten["coverage"] == pytest.approx(1 - 2 * stats.binom.cdf(1, 10, 0.5))
    assert median_interval([3.0]) is None


def test_configuration_figures_are_across_runs():
    figures = configuration_figures([1.0, 1.2, 0.9, 1.1, 1.0])
    assert figures["runs"] == 5 and figures["p50_ms"] == 1.0
    assert (figures["p50_low_ms"], figures["p50_high_ms"]) == (0.9, 1.2)
    assert figures["between_run_cv"] == pytest.approx(
        stats.variation([1.0, 1.2, 0.9, 1.1, 1.0], ddof=1)
    )
    single = configuration_figures([1.0])
    assert single["runs"] == 1 and single["between_run_cv"] is None and single["p50_low_ms"] is None


def simulated_runs(rng: random.Random, runs: int, scale: float) -> list[float]:
    """Run medians of a configuration whose runs differ (process layout, clocks): each run's
    median is the configuration's times a run-level factor, lognormal with sigma 0.15 (the
    spread seen between identical runs here), plus a little within-run noise."""
    return [scale * rng.lognormvariate(0, 0.15) * rng.lognormvariate(0, 0.002) for _ in range(runs)]


def test_identical_configurations_are_called_different_at_most_alpha_of_the_time():
    """What the old within-run test got wrong: each run's samples agree tightly with each
    other but runs differ, so it called 11 of 12 identical pairs different. Across runs, the
    false-positive rate is at most alpha."""
    rng = random.Random(17)
    trials = 2000
    wrong = sum(
        compare_runs(simulated_runs(rng, 5, 1.0), simulated_runs(rng, 5, 1.0)).significant
        for _ in range(trials)
    )
    # Binomial(2000, 0.05) stays under 0.05 + 3 sigma (0.0646) but for a 0.1 % chance.
    assert wrong / trials <= across_runs.ALPHA + 3 * math.sqrt(0.05 * 0.95 / trials)


def test_a_large_real_difference_is_found():
    rng = random.Random(3)
    found = sum(
        compare_runs(simulated_runs(rng, 5, 1.0), simulated_runs(rng, 5, 1.6)).significant
        for _ in range(500)
    )
    assert found / 500 >= 0.8


def test_a_tiny_certain_difference_is_below_the_practical_threshold():
    a = [1.000, 1.001, 0.999, 1.0005, 0.9995]
    b = [v * 1.01 for v in a]
    verdict = compare_runs(a, b)
    assert verdict.p_value == pytest.approx(2 / 252)
    assert not verdict.significant and "no practical difference" in verdict.verdict()


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="at least one measured run"):
        compare_runs([], [1.0])
    with pytest.raises(ValueError, match="positive"):
        compare_runs([0.0, 1.0, 1.0], [1.0, 1.0, 1.0])


@pytest.mark.parametrize("n", [2, 5, 6, 9, 17, 40, 331, 2000])
def test_median_interval_ranks_match_the_binomial_definition(n):
    """The one-walk search gives the ranks and coverage the definition gives (each rank's
    binomial_cdf summed afresh)."""
    j = 1
    while j + 1 <= n // 2 and 1 - 2 * statistics.binomial_cdf(j, n, 0.5) >= 0.95:
        j += 1
    found = across_runs.median_interval(list(range(n)))
    assert (found["low"], found["high"]) == (j - 1, n - j)
    assert found["coverage"] == pytest.approx(
        1 - 2 * statistics.binomial_cdf(j - 1, n, 0.5), abs=1e-12
    )
