"""Output fidelity against fp32 reference outputs, and top-1 accuracy on labelled data.

A reference file (``.npz``) holds ``inputs`` (the model's input, already preprocessed,
float32), ``outputs`` (what the fp32 model computed for them) and, for models trained
on real data, ``labels`` (the true class of each input). A quantized model is fed the
same inputs (quantized with its own scale and zero point) and its outputs are
dequantized before they are compared.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np


def to_model_dtype(values: Any, declared: Dict[str, Any]) -> Any:
    """Float inputs as the model takes them: quantized for an integer input with a scale."""
    dtype = np.dtype(declared["dtype"])
    if dtype.kind == "f":
        return values.astype(dtype)
    quantization = declared.get("quantization")
    if not quantization:
        raise ValueError(
            f"input {declared['name']!r} is {dtype.name} without a quantization scale: "
            "float reference inputs cannot be fed to it"
        )
    scale, zero_point = quantization
    info = np.iinfo(dtype)
    quantized = np.round(values / scale) + zero_point
    return np.clip(quantized, info.min, info.max).astype(dtype)


def to_float(values: Any, declared: Optional[Dict[str, Any]]) -> Any:
    """Model outputs as floats: dequantized when the output is an integer with a scale."""
    array = np.asarray(values)
    quantization = (declared or {}).get("quantization")
    if array.dtype.kind in "iu" and quantization:
        scale, zero_point = quantization
        return (array.astype(np.float64) - zero_point) * scale
    return array.astype(np.float64)


def compare(
    outputs: Any, reference: Any, labels: Optional[Sequence[int]] = None
) -> Dict[str, Optional[float]]:
    """Fidelity of ``outputs`` against ``reference`` (both N x ...), and accuracy if labelled.

    Cosine similarity is per sample (flattened), then averaged; top-1 agreement compares
    the arg-max over the last axis. Values are plain floats, for the JSON result.
    """
    got = np.asarray(outputs, dtype=np.float64)
    want = np.asarray(reference, dtype=np.float64)
    if got.shape != want.shape:
        raise ValueError(f"outputs of shape {got.shape} do not match the reference {want.shape}")
    n = got.shape[0]
    flat_got, flat_want = got.reshape(n, -1), want.reshape(n, -1)
    norms = np.linalg.norm(flat_got, axis=1) * np.linalg.norm(flat_want, axis=1)
    dots = np.sum(flat_got * flat_want, axis=1)
    # Two zero vectors agree perfectly; one zero vector against another has no direction.
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    both_zero = (np.linalg.norm(flat_got, axis=1) == 0) & (np.linalg.norm(flat_want, axis=1) == 0)
    cosine = np.where(both_zero, 1.0, cosine)
    top_got, top_want = np.argmax(got, axis=-1), np.argmax(want, axis=-1)
    result: Dict[str, Optional[float]] = {
        "fidelity_max_abs_error": float(np.max(np.abs(got - want))),
        "fidelity_cosine": float(np.mean(cosine)),
        "fidelity_top1_agreement": float(np.mean(top_got == top_want)),
        "accuracy": None,
        "accuracy_n": None,
    }
    if labels is not None:
        truth = np.asarray(labels).reshape(-1)
        if truth.shape[0] != n:
            raise ValueError(f"{truth.shape[0]} labels for {n} outputs")
        predicted = top_got.reshape(n, -1)[:, 0] if top_got.ndim > 1 else top_got
        result["accuracy"] = float(np.mean(predicted == truth))
        result["accuracy_n"] = int(n)
    return result


def chunks(total: int, size: int) -> List[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``."""
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]
