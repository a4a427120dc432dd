"""The mlperf_* scenarios run the real MLPerf LoadGen (mlcommons-loadgen) against the
harness, and the native multi_stream counts its deadline misses. LoadGen's own summary is
checked against what the harness did: the samples it ran, the rate it was asked for."""

from __future__ import annotations

import sys

import pytest

from agents import runner
from agents.contract import MeasurementPolicy
from agents.measurement import loadgen, scenarios
from agents.measurement.timing import StoppingRule
from tests.unit.test_onnxruntime_runner import make_spec, mlp, model_file  # noqa: F401
from tests.unit.test_scenario_figures import spin

RULE = StoppingRule(warmup_s=0, min_queries=200, min_s=0.2, max_s=5, max_queries=100_000)


@pytest.fixture(autouse=True)
def needs_loadgen():
    pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen (edgebench[mlperf])")


def test_single_stream_is_timed_by_loadgen_on_the_work_the_harness_did():
    outcome = scenarios.run("mlperf_single_stream", spin(0.2), RULE)
    summary = outcome.report["loadgen"]
    assert summary["Scenario"] == "SingleStream" and summary["Mode"] == "PerformanceOnly"
    assert summary["Min queries satisfied"] == "Yes" and outcome.queries >= RULE.min_queries
    assert summary["valid"] == (summary["Result is"] == "VALID")
    # LoadGen timed the 0.2 ms of work each query does, from its own issue to completion.
    assert summary["Min latency (ns)"] >= 200_000
    assert min(outcome.samples_ns) >= 200_000 and len(outcome.samples_ns) == outcome.queries
    assert (
        summary["Early stopping 90.0th percentile estimate"]
        >= summary["50.00 percentile latency (ns)"]
    )


def test_offline_runs_every_sample_loadgen_issued_in_its_one_query():
    outcome = scenarios.run("mlperf_offline", spin(0.2), RULE)
    summary = outcome.report["loadgen"]
    assert summary["Scenario"] == "Offline"
    assert outcome.queries == summary["samples_per_query"] == len(outcome.samples_ns)
    assert summary["Samples per second"] > 0


def test_multi_stream_queries_hold_the_samples_per_query_asked_for():
    outcome = scenarios.run("mlperf_multi_stream", spin(0.1), RULE, {"samples_per_query": 4})
    summary = outcome.report["loadgen"]
    assert summary["Scenario"] == "MultiStream" and summary["samples_per_query"] == 4
    assert outcome.queries == 4 * len(outcome.samples_ns)
    assert min(outcome.samples_ns) >= 4 * 100_000  # each query ran its 4 samples


def test_server_schedules_the_target_rate():
    outcome = scenarios.run("mlperf_server", spin(0.1), RULE, {"rate": 400.0})
    summary = outcome.report["loadgen"]
    assert summary["Scenario"] == "Server" and summary["target_qps"] == pytest.approx(400.0)
    assert summary["Scheduled samples per second"] == pytest.approx(400.0, rel=0.25)


def test_without_loadgen_a_trial_fails_with_the_extra_to_install(model_file, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)
    policy = MeasurementPolicy(warmup_s=0, min_queries=10, min_s=0, max_s=5)
    spec = make_spec(model_file, scenario="mlperf_single_stream", policy=policy)
    with pytest.raises(runner.TrialError, match=r"pip install 'edgebench\[mlperf\]'"):
        runner.run_trial(spec)


def test_a_real_trial_stores_loadgens_summary_beside_edgebenchs_figures(model_file):  # noqa: F811
    policy = MeasurementPolicy(warmup_s=0, min_queries=100, min_s=0.1, max_s=5)
    spec = make_spec(model_file, scenario="mlperf_single_stream", policy=policy)
    result = runner.run_trial(spec)
    summary = result["scenario_report"]["loadgen"]
    assert summary["Scenario"] == "SingleStream" and result["summary"]["n"] >= 100
    # edgebench's p50 (issue to completion in the harness) and LoadGen's, on the same queries
    loadgen_p50_ms = summary["50.00 percentile latency (ns)"] / 1e6
    assert 0.5 < result["summary"]["p50_ms"] / loadgen_p50_ms < 2.0
    assert (
        loadgen.SCENARIOS["mlperf_single_stream"] == result["scenario_report"]["loadgen_scenario"]
    )
