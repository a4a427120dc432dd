"""Precision variants of a user's fp32 ONNX model, made with the field's own tools.

- ONNX int8: onnxruntime's static QDQ quantization, calibrated on the sample input values
  (each row of the batch axis one calibration query). Without a sample it is calibrated
  on seeded normal values and says so: its accuracy then means nothing.
- ONNX int8_dynamic: onnxruntime's dynamic quantization (int8 weights, activations
  quantized per query), a method of its own beside static int8: no calibration, and what
  transformer and recurrent models usually get.
- ONNX fp16: onnxconverter-common, with float32 inputs and outputs kept.

Each variant is loaded by onnxruntime before it is kept. A conversion that fails leaves the
variant out, with the converter's reason in the model's notes (``models show``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from orchestrator.artifacts import converters, reference_outputs, validation

SEEDED_WARNING = (
    "ONNX int8 calibrated on seeded normal values, not real data: its latency is real, its "
    "accuracy is not meaningful (pass --sample-input to calibrate on real values)"
)


def calibration_feeds(
    inputs: list[dict[str, Any]], sample: dict[str, np.ndarray] | None
) -> tuple[list[dict[str, np.ndarray]], bool] | None:
    """(one feed per row of the batch axis, seeded?), or None where integer inputs have no
    sample values to calibrate on."""
    seeded = sample is None
    values = sample if sample is not None else reference_outputs.seeded_inputs(inputs)
    if values is None:
        return None
    rows = min(
        (values[n["name"]].shape[n["batch_axis"]] for n in inputs if n["batch_axis"] is not None),
        default=1,
    )
    feeds = []
    for row in range(rows):
        feed = {}
        for node in inputs:
            value, axis = values[node["name"]], node["batch_axis"]
            if axis is not None:
                value = np.take(value, [row], axis=axis)
            feed[node["name"]] = value.astype(node["dtype"], order="C")
        feeds.append(feed)
    return feeds, seeded


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1][:300]}"


def openvino_refuses(onnx_bytes: bytes) -> str | None:
    """Why OpenVINO cannot compile this ONNX file for its CPU (OpenVINO reads ONNX
    directly: a plan that sent it there would fail), or None."""
    if importlib.util.find_spec("openvino") is None:
        return None
    import openvino

    core = openvino.Core()
    try:
        core.compile_model(core.read_model(onnx_bytes, b""), "CPU")
    except Exception as exc:  # OpenVINO's own reason is the one to show
        return f"OpenVINO cannot compile it ({_why(exc)})"
    return None


def quantized_ops(onnx_bytes: bytes) -> list[str]:
    """The operators of a quantized model that compute on or make integers."""
    import onnx

    return [
        node.op_type
        for node in onnx.load_from_string(onnx_bytes).graph.node
        if "Quantize" in node.op_type
        or node.op_type.endswith("Integer")
        or node.op_type == "QAttention"
    ]


def dynamic_variant(
    data: bytes, feed: dict[str, np.ndarray] | None
) -> tuple[list[tuple[str, str, bytes, dict]], list[str], dict[str, str]]:
    """The ONNX int8_dynamic variant, kept only if onnxruntime loads it and runs one query
    (its CPU kernels lack some integer ops, e.g. ConvInteger with int8 weights)."""
    try:
        quantized, recipe = converters.onnx_to_int8_dynamic(data)
    except Exception as exc:  # a model the quantizer cannot take: say so, go on
        why = f"onnxruntime's quantize_dynamic failed on it ({_why(exc)})"
        return [], [f"no ONNX int8_dynamic variant: {why}"], {"onnxruntime:int8_dynamic": why}
    if not quantized_ops(quantized):  # an "int8_dynamic" that computes in fp32 is no variant
        why = (
            "onnxruntime's quantize_dynamic quantized no operator (it takes MatMul, Conv, "
            "Gather, LSTM... whose weights are initializers)"
        )
        return [], [f"no ONNX int8_dynamic variant: {why}"], {"onnxruntime:int8_dynamic": why}
    try:
        validation.describe(quantized, "onnx")
        if feed is not None:
            reference_outputs.fp32_runner("onnx", quantized)(feed)
    except Exception as exc:  # onnxruntime's kernels lack an integer op it used
        why = f"onnxruntime cannot run the dynamically quantized model ({_why(exc)})"
        return [], [f"no ONNX int8_dynamic variant: {why}"], {"onnxruntime:int8_dynamic": why}
    refused = {}
    notes = []
    why = openvino_refuses(quantized)
    if why:
        notes.append(f"OpenVINO cannot run the ONNX int8_dynamic variant: {why}")
        refused["openvino:int8_dynamic"] = why
    return [("onnx", "int8_dynamic", quantized, recipe)], notes, refused


def onnx_variants(
    data: bytes, inputs: list[dict[str, Any]], sample: dict[str, np.ndarray] | None
) -> tuple[list[tuple[str, str, bytes, dict]], list[str], dict[str, str]]:
    """([(format, precision, bytes, recipe)], notes, {"runtime:precision": why it cannot})
    for a user's fp32 ONNX model."""
    derived, notes, refused = [], [], {}
    calibration = calibration_feeds(inputs, sample)
    if calibration is None:
        notes.append("no ONNX int8 variant: integer inputs need --sample-input to calibrate on")
    else:
        feeds, seeded = calibration
        try:
            int8, recipe = converters.onnx_feeds_to_int8(data, feeds)
            validation.describe(int8, "onnx")
        except Exception as exc:  # a model the quantizer cannot take: say so, go on
            notes.append(f"no ONNX int8 variant: onnxruntime could not quantize it ({_why(exc)})")
        else:
            recipe["calibration"] = "seeded normal values" if seeded else "the sample input"
            if seeded:
                notes.append(SEEDED_WARNING)
            derived.append(("onnx", "int8", int8, recipe))
            why = openvino_refuses(int8)
            if why:
                notes.append(f"OpenVINO cannot run the ONNX int8 variant: {why}")
                refused["openvino:int8"] = why
    dynamic = dynamic_variant(data, calibration[0][0] if calibration else None)
    derived += dynamic[0]
    notes += dynamic[1]
    refused.update(dynamic[2])
    if importlib.util.find_spec("onnxconverter_common") is None:
        notes.append("no ONNX fp16 variant: onnxconverter-common is not installed (modelzoo)")
        return derived, notes, refused
    try:
        fp16, recipe = converters.onnx_to_fp16(data)
        validation.describe(fp16, "onnx")
    except Exception as exc:  # the converter or onnxruntime refused the result
        notes.append(f"no ONNX fp16 variant: {_why(exc)}")
    else:
        derived.append(("onnx", "fp16", fp16, recipe))
    return derived, notes, refused
