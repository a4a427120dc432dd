"""Bounded re-runs of unstable or throttled runs, and the runtime's own latency beside the
call latency (OpenVINO), in real trials on this machine."""

from __future__ import annotations

from agents import runner
from agents.contract import MeasurementPolicy
from tests.unit.test_onnxruntime_runner import make_spec
from tests.unit.test_runtime_options import cnn_file, cnn_spec  # noqa: F401

STRICT = {"warmup_s": 0, "min_queries": 30, "min_s": 0, "max_s": 1, "idle_baseline_s": 0}


def test_an_unstable_run_is_measured_again_up_to_the_bound_and_set_aside_runs_are_kept(
    cnn_file,  # noqa: F811
):
    # A CV bound nothing meets: every run is unstable, so the trial re-runs twice and stops.
    policy = MeasurementPolicy(**STRICT, max_cv=1e-9, max_reruns=2)
    result = runner.run_trial(make_spec(cnn_file, policy=policy, **_cnn()))
    assert [r["reason"].split(" ")[0] for r in result["environment"]["reruns"]] == [
        "unstable",
        "unstable",
    ]
    assert all(r["n"] >= 30 and r["p50_ms"] > 0 for r in result["environment"]["reruns"])
    assert result["unstable"] is True  # the last run is reported as it is


def test_a_stable_run_or_no_rerun_budget_measures_once(cnn_file):  # noqa: F811
    for policy in (
        MeasurementPolicy(**STRICT, max_cv=100, max_reruns=3),
        MeasurementPolicy(**STRICT, max_cv=1e-9, max_reruns=0),
    ):
        result = runner.run_trial(make_spec(cnn_file, policy=policy, **_cnn()))
        assert "reruns" not in result["environment"]


def test_a_throttled_run_is_a_reason_to_measure_again():
    held_back = {"pi_throttled": {"raw": "0x4", "throttled_now": True}}  # vcgencmd bit 2
    assert runner.rerun_reason(0.0, 0.3, {}, held_back) == "throttled"
    assert runner.rerun_reason(0.0, 0.3, {}, {}) is None
    assert runner.rerun_reason(0.5, 0.3, {}, {}) == "unstable (cv 0.50 > 0.3)"


def test_openvino_reports_its_own_latency_beside_the_call(cnn_file):  # noqa: F811
    result = runner.run_trial(cnn_spec(cnn_file, "openvino"))
    internal = result["environment"]["runtime_internal"]
    assert internal["n"] == runner.INTERNAL_SAMPLES
    assert 0 < internal["internal_p50_ms"] <= internal["call_p50_ms"]
    assert internal["call_overhead_ms"] == internal["call_p50_ms"] - internal["internal_p50_ms"]


def _cnn() -> dict:
    from agents.contract import InputSpec

    return {
        "model": "small_cnn_96",
        "inputs": [InputSpec(name="input", shape=[None, 3, 96, 96], dtype="float32")],
    }
