"""agents.measurement.timing: the stopping rule, warm-up and the timing loop."""

from __future__ import annotations

import time

import pytest

from agents.measurement.timing import StoppingRule, time_runs, warm_up


def rule(**overrides) -> StoppingRule:
    values = {"warmup_s": 0.0, "min_queries": 10, "min_s": 1.0, "max_s": 5.0}
    values.update(overrides)
    return StoppingRule(**values)


class Counter:
    def __init__(self, sleep_s: float = 0.0) -> None:
        self.calls = 0
        self.sleep_s = sleep_s

    def __call__(self) -> int:
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return sum(range(50))  # a little real work, so no run takes 0 ns


# --- StoppingRule.done -----------------------------------------------------------------


def test_done_needs_both_min_queries_and_min_s():
    r = rule(min_queries=10, min_s=1.0, max_s=5.0)
    assert not r.done(0, 0.0)
    assert not r.done(10, 0.5), "enough queries but not enough time must not stop"
    assert not r.done(9, 2.0), "enough time but not enough queries must not stop"
    assert not r.done(9, 4.999)
    assert r.done(10, 1.0), "both minimums reached exactly must stop"
    assert r.done(11, 1.5)


def test_done_max_s_caps_even_without_enough_queries():
    r = rule(min_queries=1000, min_s=1.0, max_s=5.0)
    assert not r.done(3, 4.99)
    assert r.done(3, 5.0)
    assert r.done(0, 6.0)


def test_done_max_queries_caps_even_before_min_s():
    r = rule(min_queries=10, min_s=3.0, max_s=30.0, max_queries=20)
    assert not r.done(19, 0.1)
    assert r.done(20, 0.1)
    assert r.done(21, 0.0)


def test_done_with_zero_minimums_stops_after_the_first_sample():
    r = rule(min_queries=1, min_s=0.0, max_s=1.0)
    assert not r.done(0, 0.0)
    assert r.done(1, 0.0)


# --- warm_up ---------------------------------------------------------------------------


def test_warm_up_with_zero_seconds_runs_exactly_once():
    fn = Counter()
    assert warm_up(fn, 0) == 1
    assert fn.calls == 1


def test_warm_up_runs_until_its_time_is_over():
    fn = Counter(sleep_s=0.002)
    started = time.perf_counter()
    count = warm_up(fn, 0.03)
    elapsed = time.perf_counter() - started
    assert count == fn.calls
    assert count >= 2
    assert elapsed >= 0.03
    assert elapsed < 1.0


# --- time_runs -------------------------------------------------------------------------


def test_time_runs_returns_positive_ns_and_stops_at_min_queries():
    fn = Counter()
    samples = time_runs(fn, rule(min_queries=25, min_s=0.0, max_s=10.0))
    assert len(samples) == 25
    assert fn.calls == 25
    assert all(isinstance(s, int) for s in samples)
    assert all(s > 0 for s in samples)


def test_time_runs_measures_the_callable():
    # each run sleeps 2 ms, so each sample is at least 2_000_000 ns
    samples = time_runs(Counter(sleep_s=0.002), rule(min_queries=3, min_s=0.0, max_s=10.0))
    assert len(samples) == 3
    assert min(samples) >= 2_000_000
    assert max(samples) < 1_000_000_000


def test_time_runs_keeps_going_until_min_s():
    fn = Counter(sleep_s=0.001)
    started = time.perf_counter()
    samples = time_runs(fn, rule(min_queries=1, min_s=0.04, max_s=5.0))
    elapsed = time.perf_counter() - started
    assert elapsed >= 0.04
    assert len(samples) >= 2, "min_s must keep the loop going after min_queries"
    assert sum(samples) <= elapsed * 1e9


def test_time_runs_stops_at_max_s():
    fn = Counter(sleep_s=0.001)
    started = time.perf_counter()
    samples = time_runs(fn, rule(min_queries=10**6, min_s=0.0, max_s=0.05, max_queries=10**7))
    elapsed = time.perf_counter() - started
    assert elapsed >= 0.05
    assert elapsed < 2.0
    assert 1 <= len(samples) < 10**6


def test_time_runs_stops_at_max_queries():
    fn = Counter()
    samples = time_runs(fn, rule(min_queries=100, min_s=60.0, max_s=60.0, max_queries=7))
    assert len(samples) == 7
    assert fn.calls == 7


@pytest.mark.parametrize("min_queries", [1, 2, 13])
def test_time_runs_sample_count_equals_calls(min_queries):
    fn = Counter()
    samples = time_runs(fn, rule(min_queries=min_queries, min_s=0.0))
    assert len(samples) == fn.calls == min_queries


# --- the conditions timeline ---------------------------------------------------------------


def test_timeline_reads_about_once_per_interval_and_skips_empty_readings():
    from agents.measurement.timing import Timeline

    readings = iter([{"c": 50.0}, {"c": None}, {"c": 52.0}])
    timeline = Timeline(lambda: next(readings), every_s=1.0)
    for now_s in (10.0, 10.4, 11.0, 11.5, 12.2, 12.9):
        timeline.tick(int(now_s * 1e9))
    # read at 10.0 (first), 11.0 (nothing readable: not kept), 12.2
    assert timeline.points == [{"t_s": 0.0, "c": 50.0}, {"t_s": 2.2, "c": 52.0}]


def test_a_trial_records_temperature_and_clock_over_time_outside_the_timed_runs(tmp_path):
    """Against the Raspberry Pi 4 conditions tree (hand-written, see its README)."""
    from pathlib import Path

    from agents import runner
    from agents.contract import MeasurementPolicy
    from tests.unit.test_onnxruntime_runner import make_spec
    from tests.unit.test_runtime_options import cnn_file  # noqa: F401

    root = Path(__file__).resolve().parents[1] / "fixtures/conditions/raspberry-pi-4-handwritten"
    model = tmp_path / "mlp.onnx"
    from orchestrator.artifacts.builtin_models import mlp

    model.write_bytes(mlp().onnx_bytes)
    policy = MeasurementPolicy(
        warmup_s=0, min_queries=10, min_s=2.2, max_s=3, max_queries=500_000, idle_baseline_s=0
    )
    result = runner.run_trial(make_spec(model, policy=policy), root=root)
    timeline = result["scenario_report"]["timeline"]
    assert len(timeline) >= 2 and timeline[0]["t_s"] == 0.0
    assert all(p["hottest_c"] == 51.121 and p["freq_mhz"] == 600.0 for p in timeline)
