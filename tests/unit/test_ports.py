"""The adapters and the upload validation read a model's inputs with the same reader per
runtime (agents.contract.ports): what `models add` stores is what the runtime sees."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from agents import runtimes
from agents.contract import ports
from orchestrator.artifacts import validation

TYPES = ["FLOAT", "FLOAT16", "DOUBLE", "INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32",
         "INT64", "UINT64", "BOOL"]  # fmt: skip


def identity_model(elem_type: str) -> bytes:
    kind = getattr(TensorProto, elem_type)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", kind, ["batch", 4])],
        [helper.make_tensor_value_info("y", kind, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("elem_type", TYPES)
def test_onnx_inputs_read_the_same_by_the_adapter_and_by_models_add(elem_type, tmp_path):
    data = identity_model(elem_type)
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    described = validation.describe(data, "onnx")
    loaded = runtimes.adapter("onnxruntime").load(str(path))
    assert loaded.inputs() == described
    expected = np.dtype(helper.tensor_dtype_to_np_dtype(getattr(TensorProto, elem_type))).name
    assert described == [
        {"name": "x", "shape": [None, 4], "dtype": expected, "dim_names": ["batch", None]}
    ]


def test_the_onnx_type_names_are_numpys():
    assert ports.onnx_dtype("tensor(float)") == "float32"
    assert ports.onnx_dtype("tensor(double)") == "float64"
    assert ports.onnx_dtype("tensor(uint16)") == "uint16"
    assert onnx.__version__  # the models above are real ONNX files
