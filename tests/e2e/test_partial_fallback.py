"""A partial fallback named: onnxruntime with OpenVINO's execution provider
(`onnxruntime-openvino`, PyPI's build, in its own venv: it replaces the `onnxruntime`
module) takes the convolution and leaves the Hardmax node, which it does not support, to
the CPU provider. `get_providers()` lists OpenVINO first, so the placement read before
profiles said "no fallback"; the profile pass names the node that ran elsewhere."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

PROBE = """
import json, sys
import numpy as np
from agents.runtimes import profiling
from agents.runtimes.onnxruntime import OnnxRuntimeAdapter
model = OnnxRuntimeAdapter().load(sys.argv[1], {"device": "OpenVINO"})
placement = model.placement()
said_before = placement.fallback
profile = model.profile({"x": np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)}, 10)
placement = profiling.with_profile(placement, profile)
print(json.dumps({"said_before": said_before, "fallback": placement.fallback,
                  "detail": placement.detail, "units": sorted({op.unit for op in profile.ops})}))
"""


@pytest.fixture(scope="session")
def openvino_ep_venv(tmp_path_factory) -> Path:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.skip("onnxruntime-openvino has wheels for x86-64 Linux only")
    venv = tmp_path_factory.mktemp("ort-openvino") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "onnxruntime-openvino",
         "pydantic>=2", "numpy"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def hardmax_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(1).random((4, 3, 3, 3), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Hardmax", ["r"], ["h"], name="hardmax"),
         helper.make_node("Relu", ["h"], ["y"])],
        "partial",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(weights, "W")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_node_the_openvino_provider_leaves_to_the_cpu_is_a_partial_fallback_named(
    openvino_ep_venv, tmp_path
):
    model = hardmax_model(tmp_path / "partial.onnx")
    done = subprocess.run(
        [str(openvino_ep_venv / "bin/python"), "-c", PROBE, str(model)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["said_before"] is False  # what get_providers() alone says
    assert seen["fallback"] is True and seen["detail"]["fallback_kind"] == "partial"
    assert seen["units"] == ["CPU", "OpenVINO"]
    assert seen["detail"]["fallback_ops"] == 1
    assert seen["detail"]["fallback_nodes"] == ["hardmax (Hardmax on CPU)"]
    assert 0 < seen["detail"]["fallback_time_share"] < 1
