"""The runtime seam (agents/runtimes/seam.py) and the null runtime that tests the harness.

The null runtime spins a known cost per call and imports nothing, so these check the
runner, its scenarios and its statistics against a latency known in advance, with no
runtime library involved (as MLCommons' harness has a null backend).
"""

from __future__ import annotations

import pytest

from agents import runner, runtimes
from agents.contract import MeasurementPolicy
from agents.runtimes import LoadedModel, RuntimeAdapter
from tests.unit.test_onnxruntime_runner import make_spec

COST_US = 300.0


@pytest.fixture
def null_runtime(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEBENCH_NULL_RUNTIME", "1")
    monkeypatch.setenv("EDGEBENCH_NULL_COST_US", str(COST_US))
    model = tmp_path / "nothing.bin"
    model.write_bytes(b"no model: the null runtime reads nothing")
    return model


def test_every_installed_runtime_is_found_by_its_entry_point_and_declares_the_seam():
    """Runtimes come from the edgebench.runtimes entry points (pyproject.toml), each an
    adapter on the seam's base class; the null runtime is not offered to a device."""
    assert {"onnxruntime", "openvino", "litert"} <= set(runtimes.names())
    assert "null" not in runtimes.names()
    for name in runtimes.names():
        assert isinstance(runtimes.adapter(name), RuntimeAdapter)


def test_an_unknown_runtime_names_the_known_ones():
    with pytest.raises(runtimes.RuntimeUnavailable, match="unknown runtime 'mxnet'.*onnxruntime"):
        runtimes.adapter("mxnet")


def test_an_entry_point_that_is_not_an_adapter_is_refused(monkeypatch):
    class Point:
        name, value = "odd", "somewhere:Thing"

        def load(self):
            return dict

    monkeypatch.setattr(runtimes, "_registered", lambda: {"odd": Point()})
    with pytest.raises(runtimes.RuntimeUnavailable, match="not an agents.runtimes.seam"):
        runtimes.adapter("odd")


def test_a_loaded_model_gets_the_declared_defaults(null_runtime):
    loaded = runtimes.adapter("null").load(str(null_runtime), {"input_shapes": {"x": [None, 4]}})
    assert isinstance(loaded, LoadedModel)
    assert loaded.outputs() == [] and loaded.internal_latency_ms() is None
    assert loaded.runtime_cache is False and loaded.compile_ms is None


def test_the_runner_measures_the_null_runtimes_known_cost(null_runtime):
    """A trial on a runtime that spins 300 us per call: the runner's p50 is that cost plus
    the harness's own (a few us), and throughput is queries over the measured time."""
    policy = MeasurementPolicy(warmup_s=0.05, min_queries=200, min_s=0.2, max_s=2)
    spec = make_spec(null_runtime, runtime="null", policy=policy)
    result = runner.run_trial(spec)
    p50_us = result["summary"]["p50_ms"] * 1e3
    assert COST_US <= p50_us < COST_US + 100
    assert result["runtime_version"] == "0" and result["actual_device"] == "CPU"
    assert "runtime_internal" not in result["environment"]  # the null runtime keeps no clock
    queries = result["summary"]["n"]
    assert result["throughput_ips"] == pytest.approx(1e6 / p50_us, rel=0.25)
    assert queries >= 200


def test_poisson_on_the_null_runtime_bills_service_time_not_queueing(null_runtime):
    """At 10 % load (300 us calls, 333 arrivals/s) almost no query waits: the latency from
    the scheduled arrival stays near the known cost."""
    policy = MeasurementPolicy(warmup_s=0, min_queries=150, min_s=0.3, max_s=5)
    spec = make_spec(
        null_runtime, runtime="null", scenario="poisson", scenario_params={"rate": 333},
        policy=policy,
    )  # fmt: skip
    result = runner.run_trial(spec)
    assert COST_US <= result["summary"]["p50_ms"] * 1e3 < COST_US + 150
