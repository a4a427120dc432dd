"""Stability is judged on a robust spread, and a run is measured once (an unstable one adds a
run at the controller: tests/integration/test_added_runs.py). Also the runtime's own latency
beside the call latency (OpenVINO), in real trials on this machine."""

from __future__ import annotations

from agents import runner
from agents.contract import MeasurementPolicy
from agents.contract.statistics import summarize_ns
from agents.measurement import overhead
from tests.unit.test_onnxruntime_runner import make_spec
from tests.unit.test_runtime_options import cnn_file, cnn_spec  # noqa: F401

STRICT = {"warmup_s": 0, "min_queries": 30, "min_s": 0, "max_s": 1, "idle_baseline_s": 0}


def test_one_stall_among_thousands_of_queries_does_not_make_a_run_unstable():
    """A 52 ms stall among 15,000 queries of ~12 us: the plain CV is above 10, which flagged
    nearly every trial; the robust CV sees the bulk of the run."""
    samples = [12_000 + (i * 37) % 400 for i in range(15_000)] + [52_000_000]
    summary = summarize_ns(samples)
    assert summary["cv"] > 10
    assert summary["robust_cv"] < 0.02 < MeasurementPolicy().max_cv
    # The MAD and IQR of 12.0 .. 12.4 us, evenly spread: about 0.1 and 0.2 us.
    assert 0.00009 < summary["mad_ms"] < 0.00011 and 0.00019 < summary["iqr_ms"] < 0.00021


def test_a_run_is_measured_once_and_flagged_on_its_robust_spread(cnn_file):  # noqa: F811
    unstable = runner.run_trial(make_spec(cnn_file, policy=MeasurementPolicy(**STRICT, max_cv=1e-9, max_reruns=2), **_cnn()))  # fmt: skip
    assert unstable["unstable"] is True and unstable["summary"]["robust_cv"] > 1e-9
    assert "reruns" not in unstable["environment"]  # no run is measured again and set aside
    stable = runner.run_trial(make_spec(cnn_file, policy=MeasurementPolicy(**STRICT, max_cv=100), **_cnn()))  # fmt: skip
    assert stable["unstable"] is False


def test_openvino_reports_its_own_latency_beside_the_call(cnn_file):  # noqa: F811
    result = runner.run_trial(cnn_spec(cnn_file, "openvino"))
    internal = result["environment"]["runtime_internal"]
    assert internal["n"] == overhead.INTERNAL_SAMPLES
    assert 0 < internal["internal_p50_ms"] <= internal["call_p50_ms"]
    assert internal["call_overhead_ms"] == internal["call_p50_ms"] - internal["internal_p50_ms"]


def _cnn() -> dict:
    from agents.contract import InputSpec

    return {
        "model": "small_cnn_96",
        "inputs": [InputSpec(name="input", shape=[None, 3, 96, 96], dtype="float32")],
    }
