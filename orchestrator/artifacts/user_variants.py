"""Precision variants of a user's fp32 ONNX model, made with the field's own tools.

- ONNX int8: onnxruntime's static QDQ quantization, calibrated on the sample input values
  (each row of the batch axis one calibration query). Without a sample it is calibrated
  on seeded normal values and says so: its accuracy then means nothing.
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
