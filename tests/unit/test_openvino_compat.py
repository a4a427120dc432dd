"""The OpenVINO adapter's fallbacks for 2022.3 (the last release with the NCS2's MYRIAD
plugin), with stand-ins for what 2022.3 lacks; tests/e2e/test_oldest_python.py runs the
real 2022.3 on Python 3.8."""

from __future__ import annotations

import numpy as np
import pytest

from agents.runtimes import openvino as adapter


class Request2022:
    latency = 1.5

    def infer(self, inputs=None):  # noqa: ANN001, ANN201
        return {"out": inputs["x"] + 1}


class Compiled2022:
    """A 2022.3 compiled model on a device plugin: no EXECUTION_DEVICES."""

    def __init__(self) -> None:
        self.properties = {"INFERENCE_PRECISION_HINT": None, "NUM_STREAMS": 1}

    def create_infer_request(self) -> Request2022:
        return Request2022()

    def get_property(self, name: str):  # noqa: ANN201
        if name not in self.properties:
            raise RuntimeError(f"Unsupported ExecutableNetwork config key: {name}")
        value = self.properties[name]
        return value if value is not None else PrecisionType()


class PrecisionType:
    def get_type_name(self) -> str:
        return "f32"


def test_infer_without_sharing_arguments_is_called_the_2022_way():
    loaded = adapter.LoadedOpenVinoModel(Compiled2022(), "CPU")
    assert loaded._shares is False
    [out] = loaded.run({"x": np.zeros(2)})
    assert out.tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("requested", "executed", "actual"),
    [("CPU", ["CPU"], "CPU"), ("MYRIAD", ["MYRIAD"], "MYRIAD"), ("AUTO", [], None)],
)
def test_a_plugin_without_execution_devices_reports_the_device_compiled_for(
    requested, executed, actual
):
    placement = adapter.LoadedOpenVinoModel(Compiled2022(), requested).placement().as_dict()
    assert placement["execution_devices"] == executed
    assert placement["actual_device"] == actual
    assert placement["fallback"] is (False if executed else None)
    assert placement["inference_precision"] == "f32" and placement["streams"] == "1"


class Core2022:
    available_devices = ["CPU", "MYRIAD"]

    def get_property(self, device: str, name: str) -> list:
        return {"CPU": ["BF16", "FP32", "FP16", "INT8"], "MYRIAD": ["FP16"]}[device]

    def set_property(self, device: str, properties: dict) -> None:
        if properties["INFERENCE_PRECISION_HINT"] not in ("bf16", "f32"):
            raise RuntimeError("Wrong value for property key INFERENCE_PRECISION_HINT.")


def test_precisions_leave_out_a_hint_the_plugin_refuses(monkeypatch):
    class Api:
        Core = Core2022

    monkeypatch.setattr(adapter, "_api", lambda: Api)
    monkeypatch.setattr(adapter.OpenVinoAdapter, "available", lambda self: True)
    ov = adapter.OpenVinoAdapter()
    assert ov.devices() == ["CPU", "MYRIAD", "AUTO"]
    assert ov.precisions("CPU") == ["bf16", "fp32", "int8"]  # FP16: reads it, cannot compute it
    assert ov.precisions("MYRIAD") == ["fp16"]  # no hint given there: nothing asked of it
    assert ov.precisions("AUTO") == ["bf16", "fp32", "fp16", "int8"]


def test_the_api_module_is_found_without_importing_openvino(tmp_path, monkeypatch):
    import importlib.util
    from types import SimpleNamespace

    package = tmp_path / "openvino"
    (package / "runtime").mkdir(parents=True)
    spec = SimpleNamespace(submodule_search_locations=[str(package)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    assert adapter.OpenVinoAdapter().import_name == "openvino.runtime"  # 2022.3
    (package / "_ov_api.py").write_text("")
    assert adapter.OpenVinoAdapter().import_name == "openvino"  # 2023.1 on
