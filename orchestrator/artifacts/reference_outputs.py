"""A user model's fp32 reference: inputs and what the fp32 model computes for them.

Two layouts of the reference ``.npz``, both read by the agent's fidelity check:
- one input whose batch is its first axis: ``inputs`` and ``outputs`` (the first output),
  computed one sample at a time (how the built-in models' references are stored);
- any other model (several inputs, a batch axis elsewhere, no batch axis): one array per
  input, ``input:<name>``, and one per output, ``output:<index>``, computed in one call.
The inputs are the sample values where the user gave them, else seeded normal values
(only for models whose inputs are all floats: other values cannot be made up).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from orchestrator.artifacts import validation

SEED = 13
SAMPLES = 8  # rows of seeded inputs on each batch axis
INPUT_KEY, OUTPUT_KEY = "input:", "output:"


def fp32_runner(fmt: str, data: bytes) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """A function feed -> outputs (as arrays, in the model's order) on the model's own
    runtime, on the CPU in fp32."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        return lambda feed: [np.asarray(v) for v in session.run(None, feed)]
    if fmt == "tflite":
        interpreter = validation.tflite_interpreter(data)

        def run(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            details = interpreter.get_input_details()
            for detail in details:
                value = feed[detail["name"]]
                if list(detail["shape"]) != list(value.shape):
                    interpreter.resize_tensor_input(detail["index"], list(value.shape))
            interpreter.allocate_tensors()
            for detail in interpreter.get_input_details():
                interpreter.set_tensor(detail["index"], feed[detail["name"]])
            interpreter.invoke()
            return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]

        return run
    import openvino

    xml, weights = validation.unpack_ir(data)
    core = openvino.Core()
    compiled = core.compile_model(
        core.read_model(xml, weights), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    return lambda feed: [np.asarray(v) for v in compiled(feed).values()]


def seeded_inputs(
    inputs: list[dict[str, Any]], rows_first: bool = False
) -> dict[str, np.ndarray] | None:
    """Seeded normal values at the registered shapes with SAMPLES rows on each dynamic batch
    axis (on the first axis whatever it holds, with ``rows_first``: inputs fed one row at a
    time); None when an input is not a float (its values cannot be made up)."""
    if any(np.dtype(node["dtype"]).kind != "f" for node in inputs):
        return None
    rng = np.random.default_rng(SEED)
    values = {}
    for node in inputs:
        shape = [SAMPLES if d is None else d for d in node["shape"]]
        if rows_first:
            shape = [SAMPLES, *node["shape"][1:]]
        values[node["name"]] = rng.standard_normal(shape).astype(node["dtype"])
    return values


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def reference_file(
    fmt: str, data: bytes, inputs: list[dict[str, Any]], sample: dict[str, np.ndarray] | None
) -> tuple[bytes | None, str | None]:
    """(the reference .npz, None) or (None, why there is none)."""
    one_at_a_time = len(inputs) == 1 and inputs[0]["batch_axis"] == 0
    values = sample if sample is not None else seeded_inputs(inputs, one_at_a_time)
    if values is None:
        return None, (
            "no reference outputs (fidelity will be null): the model has integer inputs; "
            "pass --sample-input to give real values"
        )
    run = fp32_runner(fmt, data)
    if one_at_a_time:
        node = inputs[0]
        rows = values[node["name"]].astype(node["dtype"])
        outputs = np.concatenate([run({node["name"]: row[np.newaxis]})[0] for row in rows])
        return npz_bytes(inputs=rows, outputs=outputs.astype(np.float32)), None
    feed = {node["name"]: values[node["name"]].astype(node["dtype"]) for node in inputs}
    outputs = run(feed)
    arrays = {f"{INPUT_KEY}{name}": value for name, value in feed.items()}
    arrays.update({f"{OUTPUT_KEY}{i}": np.asarray(out) for i, out in enumerate(outputs)})
    return npz_bytes(**arrays), None
