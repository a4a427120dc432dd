"""Dynamic int8 is a quantization method of its own (int8_dynamic), planned where int8 runs."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from orchestrator.artifacts import user_variants
from orchestrator.campaigns.matrix import ArtifactInfo, DeviceInfo, expand
from tests.unit.test_campaign_matrix import spec


def matmul_model(weights_as_initializer: bool = True) -> bytes:
    """x [N, 16] @ W [16, 8]: what dynamic quantization is for (transformers' MatMuls)."""
    weights = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
    initializers = [numpy_helper.from_array(weights, "W")]
    if not weights_as_initializer:  # W computed by a node: the quantizer needs it constant
        nodes.insert(0, helper.make_node("Identity", ["W0"], ["W"]))
        initializers = [numpy_helper.from_array(weights, "W0")]
    graph = helper.make_graph(nodes, "mm", [x], [y], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_matmul_model_gets_an_int8_dynamic_variant_onnxruntime_runs():
    feed = {"x": np.ones((1, 16), np.float32)}
    derived, notes, refused = user_variants.dynamic_variant(matmul_model(), feed)
    assert [(fmt, precision) for fmt, precision, _, _ in derived] == [("onnx", "int8_dynamic")]
    assert user_variants.quantized_ops(derived[0][2])  # it computes in integers
    assert derived[0][3]["converter"] == "onnxruntime.quantization.quantize_dynamic"
    assert "onnxruntime:int8_dynamic" not in refused


def test_a_model_the_quantizer_leaves_in_fp32_gets_no_int8_dynamic_variant_and_says_why():
    derived, notes, refused = user_variants.dynamic_variant(matmul_model(False), None)
    assert derived == [] and "quantized no operator" in notes[0]
    assert "quantized no operator" in refused["onnxruntime:int8_dynamic"]


def test_int8_dynamic_runs_where_int8_runs_and_is_skipped_where_it_does_not():
    devices = [
        DeviceInfo(
            "pc", "x86_64-cpu", ("lab",), {"onnxruntime": ["CPU", "CUDA"]},
            precisions={"onnxruntime": {"CPU": ["fp32", "int8"], "CUDA": ["fp32", "fp16"]}},
        )
    ]  # fmt: skip
    artifacts = [
        ArtifactInfo(1, "bert", "onnx", "fp32"),
        ArtifactInfo(2, "bert", "onnx", "int8_dynamic"),
    ]
    planned = expand(
        spec(
            models=["bert"],
            runtimes=[
                {"name": "onnxruntime", "device": "CPU"},
                {"name": "onnxruntime", "device": "CUDA"},
            ],
            precisions=["int8_dynamic"],
        ),
        devices,
        artifacts,
    )
    assert [(t.requested_device, t.precision) for t in planned.trials] == [("CPU", "int8_dynamic")]
    assert "runs no int8_dynamic" in planned.skipped[0]["reason"]
