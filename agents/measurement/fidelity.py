"""Output fidelity against fp32 reference outputs, and top-1 accuracy on labelled data.

A reference file (``.npz``) holds ``inputs`` (the model's input, already preprocessed,
float32), ``outputs`` (what the fp32 model computed for them) and, for models trained
on real data, ``labels`` (the true class of each input). A quantized model is fed the
same inputs (quantized with its own scale and zero point) and its outputs are
dequantized before they are compared.

A model with several inputs (or a batch axis elsewhere than first) has one array per
input (``input:<name>``) and per output (``output:<index>``) instead, fed in one call;
each output is compared, and the trial's figures are the worst output's.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np


def to_model_dtype(values: Any, declared: Dict[str, Any]) -> Any:
    """Float inputs as the model takes them: quantized for an integer input with a scale."""
    dtype = np.dtype(declared["dtype"])
    if dtype.kind == "f" or np.asarray(values).dtype.kind in "iub":
        return np.asarray(values).astype(dtype)
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


INPUT_KEY, OUTPUT_KEY = "input:", "output:"


def is_per_input(data: Dict[str, Any]) -> bool:
    """A reference stored per input and output (several inputs, or no first batch axis)."""
    return any(key.startswith(INPUT_KEY) for key in data)


def reference_feed(data: Dict[str, Any], declared: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The stored reference inputs, each as its input takes it."""
    feed = {}
    for node in declared:
        key = INPUT_KEY + node["name"]
        if key not in data:
            raise ValueError(f"the reference data has no values for input {node['name']!r}")
        feed[node["name"]] = np.asarray(to_model_dtype(data[key], node)).copy(order="C")
    return feed


def compare_outputs(
    outputs: Sequence[Any], data: Dict[str, Any], declared: Sequence[Optional[Dict[str, Any]]]
) -> Dict[str, Any]:
    """Every output against its reference: the worst output's figures (lowest cosine and
    top-1 agreement, largest error), and each output's in ``fidelity_outputs``."""
    wanted = sorted(
        (int(key[len(OUTPUT_KEY) :]), data[key]) for key in data if key.startswith(OUTPUT_KEY)
    )
    if len(wanted) != len(outputs):
        raise ValueError(f"the model gave {len(outputs)} outputs, the reference {len(wanted)}")
    each = [
        compare(to_float(got, declared[i] if i < len(declared) else None), want)
        for (i, want), got in zip(wanted, outputs)
    ]
    return {
        "fidelity_max_abs_error": max(r["fidelity_max_abs_error"] for r in each),
        "fidelity_cosine": min(r["fidelity_cosine"] for r in each),
        "fidelity_top1_agreement": min(r["fidelity_top1_agreement"] for r in each),
        "accuracy": None,
        "accuracy_n": None,
        "fidelity_outputs": each,
    }


def shape_mismatch(data: Dict[str, Any], registered: List[Dict[str, Any]]) -> Optional[str]:
    """Why the reference cannot be fed at this trial's shapes (a shape sweep away from the
    registered shapes), or None. Fidelity is measured at the shapes the reference has."""
    for node in registered:
        key = INPUT_KEY + node["name"] if is_per_input(data) else "inputs"
        if key not in data:
            continue
        stored = list(np.shape(data[key]))
        axis = node.get("batch_axis")
        same = len(stored) == len(node["shape"]) and all(
            i == axis or d is None or d == s for i, (d, s) in enumerate(zip(node["shape"], stored))
        )
        if not same:
            return (
                f"the reference inputs of {node['name']!r} have shape {stored}, this trial feeds "
                f"{node['shape']}: fidelity is measured at the registered shapes"
            )
    return None
