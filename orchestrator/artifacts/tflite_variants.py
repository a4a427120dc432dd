"""TFLite variants (fp32, fp16, int8) of a user's ONNX model, converted by onnx2tf.

onnx2tf runs in its own environment (onnx2tf_env) at the registered shapes with a batch of
1: it needs static shapes, so each TFLite variant has a fixed batch and fixed dimensions,
and the plan skips other batch sizes and swept shapes for it, saying so. The inputs keep
the ONNX model's layout (onnx2tf's keep_ncw_or_nchw option), so the registered shapes and
sample values feed them unchanged. onnx2tf may still rename inputs and reorder or
transpose outputs: every variant is run beside the ONNX model on the same values, and the
correspondence found is recorded in its recipe (``io_map``). The fp32 variant must agree
with the ONNX model, or no TFLite variant is kept.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.artifacts import onnx2tf_env, reference_outputs, user_variants, validation

FILES = {
    "fp32": "_float32.tflite",
    "fp16": "_float16.tflite",
    "int8": "_integer_quant.tflite",  # int8 weights and activations, float inputs and outputs
    "int8_dynamic": "_dynamic_range_quant.tflite",  # int8 weights, activations per query
}
JOB = Path(__file__).with_name("onnx2tf_job.py")
TIMEOUT_S = 1200
# The fp32 file is another model below REJECT_COSINE (a wrong conversion: magika's gives
# 0.116); below AGREEMENT_COSINE it is kept with a note (ppocr_det at 64 x 64: 0.998, where
# the resize ops round differently), and every trial's fidelity shows it.
REJECT_COSINE = 0.99
AGREEMENT_COSINE = 0.999
SEEDED_WARNING = (
    "TFLite int8 calibrated on seeded normal values, not real data: its latency is real, its "
    "accuracy is not meaningful (pass --sample-input to calibrate on real values)"
)
SERVING_NAME = re.compile(r"^(serving_default_)?(.*?)(:\d+)?$")


class ConversionFailed(RuntimeError):
    """onnx2tf could not convert the model, or its result disagrees with the ONNX model."""


def static_model(data: bytes, inputs: list[dict[str, Any]]) -> tuple[bytes, list[str]]:
    """(the ONNX model with every input at its registered shape, batch 1; the inputs whose
    layout onnx2tf must keep: every input of rank 3 or more)."""
    import onnx

    model = onnx.load_from_string(data)
    initializers = {init.name for init in model.graph.initializer}
    registered = {node["name"]: node for node in inputs}
    keep = []
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        node = registered[graph_input.name]
        shape = [1 if i == node["batch_axis"] else d for i, d in enumerate(node["shape"])]
        for dim, size in zip(graph_input.type.tensor_type.shape.dim, shape):
            dim.ClearField("dim_param")
            dim.dim_value = size
        if len(shape) >= 3:
            keep.append(graph_input.name)
    for output in model.graph.output:  # inferred again from the fixed inputs
        output.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    # onnx2tf reads the inferred shapes (without them it mistakes some tensors for constants)
    return onnx.shape_inference.infer_shapes(model).SerializeToString(), keep


def calibration_arrays(
    inputs: list[dict[str, Any]],
    calibration: tuple[list[dict[str, np.ndarray]], bool],
    folder: Path,
) -> tuple[list[list[Any]] | None, str]:
    """([[input, .npy path, mean, std], ...] for onnx2tf's int8 calibration, what it was
    calibrated on), or (None, why there is no int8 variant)."""
    if any(np.dtype(n["dtype"]).kind != "f" or n["batch_axis"] != 0 for n in inputs):
        return None, (
            "no TFLite int8 or int8_dynamic variant: onnx2tf writes them only with "
            "calibration data, which it takes for float inputs batched on their first axis"
        )
    feeds, seeded = calibration
    arrays = []
    for node in inputs:
        path = folder / f"calibration_{len(arrays)}.npy"
        np.save(path, np.concatenate([feed[node["name"]] for feed in feeds]).astype(np.float32))
        arrays.append([node["name"], str(path), 0.0, 1.0])
    return arrays, "seeded normal values" if seeded else "the sample input"


def _failure(result: dict[str, Any], log: str) -> str:
    """onnx2tf's reason, with the ONNX node it stopped at where it names one."""
    errors = re.findall(r"^(\w+(?:Error|Exception): .+)$", log, re.MULTILINE)
    reason = errors[-1][:300] if errors else result.get("error", "no TFLite file was written")
    node = re.findall(r"onnx_op_name: (\S+)", log)
    return f"onnx2tf could not convert it ({f'at ONNX node {node[-1]}: ' if node else ''}{reason})"


def run_onnx2tf(
    python: Path, model: bytes, keep: list[str], calibration: list | None, folder: Path
) -> dict[str, Any]:
    """Convert in onnx2tf's environment; {"version", "files": {precision: bytes}} or raises
    ConversionFailed with onnx2tf's reason."""
    out = folder / "out"
    out.mkdir()
    (folder / "model.onnx").write_bytes(model)
    job = {"onnx": str(folder / "model.onnx"), "out": str(out), "keep_layout": keep}
    job["calibration"] = calibration
    (folder / "job.json").write_text(json.dumps(job))
    try:
        done = subprocess.run(
            [str(python), str(JOB), str(folder / "job.json")],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ConversionFailed(f"onnx2tf did not finish within {TIMEOUT_S} s") from None
    log = done.stdout + done.stderr
    sys.stdout.write(log)  # the models-add log (registry.build_log), not the user's screen
    result_path = out / "result.json"
    result = json.loads(result_path.read_text()) if result_path.is_file() else {}
    files = {
        precision: path.read_bytes()
        for precision, suffix in FILES.items()
        for path in out.glob(f"*{suffix}")
    }
    if not result.get("ok") or "fp32" not in files:
        raise ConversionFailed(_failure(result, log))
    return {"version": result.get("version"), "files": files}


def _reason(exc: Exception) -> str:
    """What went wrong, for a note: our own reason as it is, anything else with its type
    (a converted file that LiteRT cannot allocate or run on the ONNX model's values)."""
    if isinstance(exc, ConversionFailed):
        return str(exc)
    last = (str(exc).strip().splitlines() or [""])[-1][:300]
    return f"the converted file does not run like the ONNX model ({type(exc).__name__}: {last})"


def _plain(name: str) -> str:
    return SERVING_NAME.match(name).group(2)


def _input_names(details: list[dict], onnx_names: list[str]) -> dict[str, str]:
    """{ONNX input: TFLite input}: by name (onnx2tf's int8 files say serving_default_x:0),
    else by position."""
    if len(details) != len(onnx_names):  # e.g. a scalar input folded into a constant
        raise ConversionFailed(
            f"the TFLite file has {len(details)} inputs, the ONNX model {len(onnx_names)}"
        )
    found = {}
    for position, name in enumerate(onnx_names):
        same = [d["name"] for d in details if _plain(d["name"]) in (name, name.replace(".", "_"))]
        found[name] = same[0] if same else details[position]["name"]
    return found


def _channels_last(rank: int) -> list[int]:
    return [0, *range(2, rank), 1]


def _closeness(got: np.ndarray, want: np.ndarray) -> float:
    """Cosine of two outputs; 1 where both are all zeros."""
    got, want = got.astype(np.float64).ravel(), want.astype(np.float64).ravel()
    norms = np.linalg.norm(got) * np.linalg.norm(want)
    if norms == 0:
        return 1.0 if np.allclose(got, want) else 0.0
    return float(got @ want / norms)


def _output_map(tflite_out: list[np.ndarray], onnx_out: list[np.ndarray]) -> list[dict]:
    """For each TFLite output, the ONNX output it is and the transpose from the ONNX layout
    to the TFLite one (onnx2tf writes some outputs channels-last), found by value."""
    if len(tflite_out) != len(onnx_out):
        raise ConversionFailed(
            f"the TFLite file has {len(tflite_out)} outputs, the ONNX model {len(onnx_out)}"
        )
    mapped, used = [], set()
    for got in tflite_out:
        best = None
        for k, want in enumerate(onnx_out):
            perms = [None] + ([_channels_last(want.ndim)] if want.ndim >= 3 else [])
            for perm in perms:
                moved = want if perm is None else np.transpose(want, perm)
                if k in used or moved.shape != got.shape:
                    continue
                score = _closeness(got, moved)
                if best is None or score > best[0]:
                    best = (score, k, perm)
        if best is None:
            raise ConversionFailed(f"no ONNX output has the shape {list(got.shape)}")
        used.add(best[1])
        mapped.append({"from": best[1], "transpose": best[2], "cosine": round(best[0], 6)})
    return mapped


def io_map(tflite: bytes, feed: dict[str, np.ndarray], want: list[np.ndarray]) -> dict[str, Any]:
    """How the TFLite file's inputs and outputs correspond to the ONNX model's, found by
    running the file on ``feed`` (one query, batch 1) beside ``want``, the ONNX model's
    outputs for it."""
    interpreter = validation.tflite_interpreter(tflite)
    details = interpreter.get_input_details()
    names = _input_names(details, list(feed))
    for detail in details:
        onnx_name = next(k for k, v in names.items() if v == detail["name"])
        if list(detail["shape"]) != list(feed[onnx_name].shape):
            raise ConversionFailed(
                f"input {onnx_name!r} is {list(detail['shape'])} in the TFLite file, "
                f"{list(feed[onnx_name].shape)} in the ONNX model"
            )
        interpreter.set_tensor(detail["index"], feed[onnx_name].astype(detail["dtype"]))
    interpreter.invoke()
    got = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    return {"inputs": names, "outputs": _output_map(got, want)}


def _recipe(conversion: dict[str, Any], mapping: dict[str, Any]) -> dict[str, Any]:
    return {
        "converter": "onnx2tf (its own environment)",
        "onnx2tf": conversion["version"],
        "fixed_by": "onnx2tf converted it at the registered shapes, batch 1: it needs them static",
        "inputs_layout": "kept as in the ONNX model",
        "io_map": mapping,
    }


def tflite_variants(
    data: bytes, inputs: list[dict[str, Any]], sample: dict[str, np.ndarray] | None
) -> tuple[list[tuple[str, str, bytes, dict]], list[str], dict[str, str]]:
    """([("tflite", precision, bytes, recipe)], notes, {"runtime[:precision]": why not})
    for a user's fp32 ONNX model."""
    python = onnx2tf_env.python()
    if python is None:
        why = f"no TFLite variant: {onnx2tf_env.missing_reason()}"
        return [], [why], {"litert": why}
    calibration = user_variants.calibration_feeds(inputs, sample)  # one query per row
    if calibration is None:
        why = "no TFLite variant: integer inputs need --sample-input to check the conversion"
        return [], [why], {"litert": why}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgebench-onnx2tf-") as folder:
        feed = calibration[0][0]
        arrays, calibrated_on = calibration_arrays(inputs, calibration, Path(folder))
        refused = {}
        if arrays is None:  # onnx2tf writes its int8 files only with calibration data
            refused = {"litert:int8": calibrated_on, "litert:int8_dynamic": calibrated_on}
            notes.append(calibrated_on)
        try:
            model, keep = static_model(data, inputs)
            conversion = run_onnx2tf(python, model, keep, arrays, Path(folder))
            want = reference_outputs.fp32_runner("onnx", data)(feed)  # once, for every file
            mapping = io_map(conversion["files"]["fp32"], feed, want)
        except Exception as exc:  # onnx2tf's failure, or its file failing beside the ONNX
            why = f"no TFLite variant: {_reason(exc)}"
            return [], [why], {"litert": why}
    worst = min(entry["cosine"] for entry in mapping["outputs"])
    if worst < REJECT_COSINE:
        why = (
            f"no TFLite variant: onnx2tf's fp32 file disagrees with the ONNX model "
            f"(output cosine {worst:.4f} on the same values, below {REJECT_COSINE})"
        )
        return [], [why], {"litert": why}
    if worst < AGREEMENT_COSINE:
        notes.append(
            f"onnx2tf's fp32 TFLite agrees with the ONNX model only to cosine {worst:.4f} on "
            "the same values: its trials' fidelity will show it"
        )
    derived = [("tflite", "fp32", conversion["files"]["fp32"], _recipe(conversion, mapping))]
    for precision in ("fp16", "int8", "int8_dynamic"):
        file = conversion["files"].get(precision)
        if file is None:
            if precision == "int8" and arrays is not None:
                notes.append("no TFLite int8 variant: onnx2tf wrote none (see the log)")
            continue
        try:
            recipe = _recipe(conversion, io_map(file, feed, want))
        except Exception as exc:  # this file fails beside the ONNX model: say so, go on
            notes.append(f"no TFLite {precision} variant: {_reason(exc)}")
            continue
        if precision == "int8":
            recipe["calibration"] = calibrated_on
            if calibrated_on.startswith("seeded"):
                notes.append(SEEDED_WARNING)
        derived.append(("tflite", precision, file, recipe))
    return derived, notes, refused
