"""The pieces around onnx2tf that run without it: the static model it is given, how its
outputs are matched to the ONNX model's, its failures read from its log, and the reference
rearranged for a variant. onnx2tf itself runs in tests/e2e/test_public_models.py."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from orchestrator.artifacts import onnx2tf_env, tflite_variants, variant_data
from orchestrator.artifacts.reference_outputs import INPUT_KEY, OUTPUT_KEY


def two_output_model() -> bytes:
    """x [N, 2, H, W] -> relu(x) [N, 2, H, W] and the sum over channels and space [N]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, None)
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["y"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
        ],
        "two",
        [x],
        [y, s],
        [axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


INPUTS = [{"name": "x", "shape": [None, 2, 4, 5], "dtype": "float32", "batch_axis": 0}]


def test_the_static_model_has_the_registered_shapes_at_batch_one_and_keeps_nchw_inputs():
    static, keep = tflite_variants.static_model(two_output_model(), INPUTS)
    model = onnx.load_from_string(static)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 2, 4, 5] and keep == ["x"]
    outputs = {
        o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output
    }
    assert outputs == {"y": [1, 2, 4, 5], "s": [1]}  # inferred again from the fixed input


def test_outputs_are_matched_by_value_with_the_channels_last_transpose_onnx2tf_writes():
    rng = np.random.default_rng(0)
    image, scores = rng.standard_normal((1, 2, 4, 5)), rng.standard_normal((1, 7))
    mapped = tflite_variants._output_map(
        [scores, np.transpose(image, (0, 2, 3, 1))], [image, scores]
    )
    assert [(m["from"], m["transpose"]) for m in mapped] == [(1, None), (0, [0, 2, 3, 1])]
    assert all(m["cosine"] == pytest.approx(1.0) for m in mapped)
    # Same shapes: the values decide, not the order.
    a, b = rng.standard_normal((1, 3)), rng.standard_normal((1, 3))
    assert [m["from"] for m in tflite_variants._output_map([b, a], [a, b])] == [1, 0]
    with pytest.raises(tflite_variants.ConversionFailed, match="2 outputs, the ONNX model 1"):
        tflite_variants._output_map([a, b], [a])
    with pytest.raises(
        tflite_variants.ConversionFailed, match=r"no ONNX output has the shape \[9\]"
    ):
        tflite_variants._output_map([np.zeros(9)], [a])


def test_onnx2tf_failures_name_the_node_and_the_error_from_its_log():
    log = (
        "ERROR: The trace log is below.\nTraceback ...\n"
        "ValueError: axes don't match array\nERROR: input_onnx_file_path: model.onnx\n"
        "ERROR: onnx_op_name: encoder/att/sub\nERROR: Read this and deal with it.\n"
    )
    reason = tflite_variants._failure({"error": "SystemExit: 1"}, log)
    assert reason == (
        "onnx2tf could not convert it (at ONNX node encoder/att/sub: "
        "ValueError: axes don't match array)"
    )
    assert "SystemExit: 1" in tflite_variants._failure({"error": "SystemExit: 1"}, "nothing")


def test_without_onnx2tf_the_model_gets_no_tflite_and_litert_is_refused_with_the_fix(
    monkeypatch, tmp_path
):
    monkeypatch.setenv(onnx2tf_env.PYTHON_VARIABLE, str(tmp_path / "missing" / "python"))
    derived, notes, refused = tflite_variants.tflite_variants(two_output_model(), INPUTS, None)
    assert derived == [] and f"{onnx2tf_env.PYTHON_VARIABLE}=" in notes[0]
    assert refused["litert"] == notes[0]
    monkeypatch.delenv(onnx2tf_env.PYTHON_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert onnx2tf_env.python() is None
    assert "edgebench models setup-onnx2tf" in onnx2tf_env.missing_reason()


def load(npz: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(npz)) as arrays:
        return {key: arrays[key] for key in arrays.files}


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_a_variants_reference_follows_its_names_order_and_layout():
    data = two_output_model()
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((3, 2, 4, 5)).astype(np.float32)
    relu = np.maximum(rows, 0)
    swapped = {
        "inputs": {"x": "serving_default_x:0"},
        "outputs": [{"from": 1, "transpose": None}, {"from": 0, "transpose": [0, 2, 3, 1]}],
    }
    # A reference of several inputs' kind: one query at batch 1, in the variant's order.
    per_input = npz(**{INPUT_KEY + "x": rows, OUTPUT_KEY + "0": relu})
    got = load(variant_data.reference_for(per_input, swapped, data, INPUTS))
    assert set(got) == {INPUT_KEY + "serving_default_x:0", OUTPUT_KEY + "0", OUTPUT_KEY + "1"}
    np.testing.assert_allclose(got[OUTPUT_KEY + "0"], rows[:1].sum(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_array_equal(got[OUTPUT_KEY + "1"], np.transpose(relu[:1], (0, 2, 3, 1)))
    # Row by row, the first output first: every row kept, transposed as the variant writes it.
    in_order = {"inputs": {"x": "x"}, "outputs": [{"from": 0, "transpose": [0, 2, 3, 1]}]}
    got = load(variant_data.reference_for(npz(inputs=rows, outputs=relu), in_order, data, INPUTS))
    np.testing.assert_array_equal(got["outputs"], np.transpose(relu, (0, 2, 3, 1)))
    assert not variant_data.is_identity(in_order)
    assert variant_data.is_identity(
        {"inputs": {"x": "x"}, "outputs": [{"from": 0, "transpose": None}]}
    )


def test_a_variants_sample_is_renamed_only_where_its_names_differ():
    sample = npz(x=np.ones((2, 2, 4, 5), np.float32))
    assert variant_data.sample_for(sample, {"inputs": {"x": "x"}}) is None
    renamed = load(variant_data.sample_for(sample, {"inputs": {"x": "serving_default_x:0"}}))
    assert list(renamed) == ["serving_default_x:0"] and renamed["serving_default_x:0"].shape == (
        2,
        2,
        4,
        5,
    )
    assert variant_data.renamed_inputs(INPUTS, {"inputs": {"x": "in"}})[0]["name"] == "in"


def test_a_tflite_file_with_another_number_of_inputs_is_a_reason_not_a_traceback():
    details = [{"name": "serving_default_input:0"}, {"name": "serving_default_state:0"}]
    with pytest.raises(tflite_variants.ConversionFailed, match="2 inputs, the ONNX model 3"):
        tflite_variants._input_names(details, ["input", "state", "sr"])
    assert tflite_variants._input_names(details, ["input", "state"]) == {
        "input": "serving_default_input:0",
        "state": "serving_default_state:0",
    }
    reason = tflite_variants._reason(ValueError("Cannot set tensor: Got value of type INT64"))
    assert reason == (
        "the converted file does not run like the ONNX model "
        "(ValueError: Cannot set tensor: Got value of type INT64)"
    )
