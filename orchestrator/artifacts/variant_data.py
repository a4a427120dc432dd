"""A variant's own copies of the model's reference and sample values, for a variant whose
inputs are named differently or whose outputs come in another order or layout (a TFLite
file from onnx2tf): the model's fp32 ONNX reference, rearranged by the ``io_map`` recorded
when the variant was checked against the ONNX model (tflite_variants.io_map).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from orchestrator.artifacts import reference_outputs
from orchestrator.artifacts.reference_outputs import INPUT_KEY, OUTPUT_KEY


def _moved(value: np.ndarray, entry: dict[str, Any]) -> np.ndarray:
    return value if entry["transpose"] is None else np.transpose(value, entry["transpose"])


def is_identity(io_map: dict[str, Any]) -> bool:
    """Whether the variant reads and writes exactly as the ONNX model: same input names,
    same outputs in the same order and layout (it needs no data of its own)."""
    return all(onnx == variant for onnx, variant in io_map["inputs"].items()) and all(
        entry["from"] == position and entry["transpose"] is None
        for position, entry in enumerate(io_map["outputs"])
    )


def renamed_inputs(inputs: list[dict[str, Any]], io_map: dict[str, Any]) -> list[dict[str, Any]]:
    """The registered inputs under the variant's own input names."""
    return [{**node, "name": io_map["inputs"].get(node["name"], node["name"])} for node in inputs]


def sample_for(sample: bytes, io_map: dict[str, Any]) -> bytes | None:
    """The sample values under the variant's input names; None where the names are the same."""
    names = io_map["inputs"]
    if all(onnx == variant for onnx, variant in names.items()):
        return None
    with np.load(io.BytesIO(sample)) as arrays:
        return reference_outputs.npz_bytes(
            **{names.get(key, key): arrays[key] for key in arrays.files}
        )


def reference_for(
    reference: bytes, io_map: dict[str, Any], onnx_data: bytes, inputs: list[dict[str, Any]]
) -> bytes:
    """The reference in the variant's terms. Where the variant's first output is the ONNX
    model's first, the row-by-row reference keeps all its rows (outputs transposed as the
    variant writes them); otherwise one query at batch 1 (the variant's fixed batch), its
    outputs computed by the ONNX model and arranged in the variant's order."""
    with np.load(io.BytesIO(reference)) as stored:
        arrays = {key: stored[key] for key in stored.files}
    outputs = io_map["outputs"]
    if "inputs" in arrays and outputs[0]["from"] == 0:
        arrays["outputs"] = _moved(arrays["outputs"], outputs[0])
        return reference_outputs.npz_bytes(**arrays)
    feed = {}
    for node in inputs:
        value = arrays["inputs"] if "inputs" in arrays else arrays[INPUT_KEY + node["name"]]
        if node["batch_axis"] is not None:
            value = np.take(value, [0], axis=node["batch_axis"])
        feed[node["name"]] = value.astype(node["dtype"])
    computed = reference_outputs.fp32_runner("onnx", onnx_data)(feed)
    rearranged = {INPUT_KEY + io_map["inputs"][name]: value for name, value in feed.items()}
    for position, entry in enumerate(outputs):
        rearranged[f"{OUTPUT_KEY}{position}"] = _moved(computed[entry["from"]], entry)
    return reference_outputs.npz_bytes(**rearranged)
