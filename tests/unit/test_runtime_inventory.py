"""What the agent reports at registration: every installed runtime, its devices, and the
precisions each device runs (from the runtime itself where it says, e.g. OpenVINO's
OPTIMIZATION_CAPABILITIES)."""

from __future__ import annotations

from agents import runtimes
from agents.contract import HostFacts


def test_inventory_lists_the_three_runtimes_with_precisions_per_device():
    found = {entry["name"]: entry for entry in runtimes.inventory()}
    assert {"onnxruntime", "openvino", "litert"} <= set(found)
    for entry in found.values():
        assert set(entry["precisions"]) == set(entry["devices"])
        assert all("fp32" in p or p == ["int8"] for p in entry["precisions"].values())
    assert found["litert"]["precisions"]["CPU"] == ["fp32", "fp16", "int8"]
    assert found["onnxruntime"]["precisions"]["CPU"] == ["fp32", "int8"]
    assert {"fp32", "int8"} <= set(found["openvino"]["precisions"]["CPU"])
    # the registration message carries it, and the formats each device loads
    facts = HostFacts.model_validate({"runtimes": list(found.values())})
    assert facts.runtimes[0].precisions and facts.runtimes[0].formats


def test_inventory_says_which_formats_each_device_loads_preferred_first():
    found = {entry["name"]: entry for entry in runtimes.inventory()}
    assert found["onnxruntime"]["formats"]["CPU"] == ["onnx"]
    assert found["openvino"]["formats"]["CPU"] == ["openvino-ir", "onnx"]
    assert found["litert"]["formats"]["CPU"] == ["tflite"]
    assert runtimes.adapter("litert").formats("EdgeTPU") == ["tflite-edgetpu"]


def test_edge_tpu_runs_int8_only_and_the_gpu_delegate_floats():
    litert = runtimes.adapter("litert")
    assert litert.precisions("EdgeTPU") == ["int8"]
    assert litert.precisions("GPU") == ["fp32", "fp16"]


def test_litert_imports_the_interpreter_module_the_device_has(monkeypatch):
    """On Python < 3.10 the litert extra installs tflite-runtime, not ai-edge-litert: the
    runner must import (and time) tflite_runtime's interpreter there, not fail on
    ai_edge_litert. Where ai_edge_litert is present, its interpreter module is what is timed
    (its package __init__ alone is 8 ms of a ~290 ms import)."""
    import importlib.util

    litert = runtimes.adapter("litert")
    assert litert.import_name == "ai_edge_litert.interpreter"  # installed here
    real_find_spec = importlib.util.find_spec

    def only_tflite_runtime(name, *args):  # noqa: ANN001, ANN202
        if name == "ai_edge_litert":
            return None
        if name == "tflite_runtime":
            return real_find_spec("json")  # any importable spec: "installed"
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", only_tflite_runtime)
    assert litert.import_name == "tflite_runtime.interpreter"
    assert litert.available()
