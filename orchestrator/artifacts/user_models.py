"""Registering a user's own model: validate it by loading it, derive the variants that can
be derived, compute its fp32 reference outputs, and record everything with how it was made.

Nothing is stored until every check has passed: a corrupt or truncated file, a
shape that would have to be guessed, or a sample file that does not fit is refused
with the reason.
"""

from __future__ import annotations

import importlib.util
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.artifacts import content_store, converters, validation
from orchestrator.store import repository
from orchestrator.store.models import Model, ModelCard

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
REFERENCE_SEED = 13
REFERENCE_SAMPLES = 8


class ModelRejected(ValueError):
    """A user's model that cannot be registered, with the reason."""


@dataclass
class Candidate:
    """What will be stored, once everything checked out."""

    name: str
    fmt: str
    precision: str
    data: bytes
    inputs: list[dict[str, Any]]
    derived: list[tuple[str, str, bytes, dict]] = field(default_factory=list)
    reference: bytes | None = None
    notes: list[str] = field(default_factory=list)


def parse_shapes(values: list[str]) -> dict[str, list[int]]:
    """``name=1,3,224,224`` options into {name: [1, 3, 224, 224]}."""
    shapes = {}
    for value in values:
        name, _, dims = value.partition("=")
        try:
            shape = [int(d) for d in dims.split(",")]
        except ValueError:
            shape = []
        if not name or not shape or any(d < 1 for d in shape):
            raise ModelRejected(f"--input-shape {value!r}: expected NAME=D1,D2,... with dims >= 1")
        shapes[name] = shape
    return shapes


def read_model_file(path: Path) -> tuple[str, bytes]:
    """(format, bytes) of the file; an OpenVINO .xml is packed with the .bin beside it."""
    if not path.is_file():
        raise ModelRejected(f"{path}: no such file")
    fmt = validation.format_of(path)
    data = path.read_bytes()
    if not data:
        raise ModelRejected(f"{path}: the file is empty")
    if fmt == "tflite" and validation.EDGETPU_MARKER in data:
        fmt = "tflite-edgetpu"
    if fmt == "openvino-ir":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise ModelRejected(f"{path}: an OpenVINO IR needs its weights file {weights.name}")
        data = converters.pack_ir(data, weights.read_bytes())
    return fmt, data


def resolve_inputs(
    declared: list[dict[str, Any]], shapes: dict[str, list[int]]
) -> list[dict[str, Any]]:
    """Inputs with every dimension known but the batch; never a silent guess."""
    names = {node["name"] for node in declared}
    unknown = sorted(set(shapes) - names)
    if unknown:
        raise ModelRejected(
            f"--input-shape names {', '.join(unknown)}, but the model's inputs are "
            f"{', '.join(sorted(names))}"
        )
    resolved = []
    for node in declared:
        shape = list(node["shape"])
        given = shapes.get(node["name"])
        if given is not None:
            if len(given) != len(shape):
                raise ModelRejected(
                    f"input {node['name']!r} has {len(shape)} dimensions {shape}; "
                    f"--input-shape gave {len(given)}"
                )
            clash = [(d, g) for d, g in zip(shape[1:], given[1:]) if d is not None and d != g]
            if clash:
                raise ModelRejected(
                    f"input {node['name']!r} is fixed at {shape}; --input-shape {given} disagrees"
                )
            shape = [shape[0], *given[1:]]
        if any(d is None for d in shape[1:]):
            raise ModelRejected(
                f"input {node['name']!r} has dynamic dimensions {node['shape']} beyond the batch: "
                f"give --input-shape {node['name']}=1,... (edgebench does not guess shapes)"
            )
        resolved.append({**node, "shape": shape})
    return resolved


def _reference_inputs(
    inputs: list[dict[str, Any]], sample: dict[str, np.ndarray] | None
) -> np.ndarray | None:
    if len(inputs) != 1:
        return None
    node = inputs[0]
    if sample is not None:
        return sample[node["name"]]
    if np.dtype(node["dtype"]).kind != "f":
        return None  # integer inputs whose values matter: only a sample file can say which
    shape = [REFERENCE_SAMPLES, *node["shape"][1:]]
    rng = np.random.default_rng(REFERENCE_SEED)
    return rng.standard_normal(shape).astype(np.dtype(node["dtype"]))


def load_sample(path: Path, inputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """A sample-input .npz: one array per model input, named as the input, batch first."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ModelRejected(f"{path}: not a readable .npz file ({exc})") from None
    for node in inputs:
        if node["name"] not in arrays:
            raise ModelRejected(
                f"{path}: no array named {node['name']!r} (it has: {', '.join(arrays) or 'none'})"
            )
        array = arrays[node["name"]]
        if list(array.shape[1:]) != list(node["shape"][1:]):
            raise ModelRejected(
                f"{path}: {node['name']!r} has shape {list(array.shape)}, the input takes "
                f"[N, {', '.join(str(d) for d in node['shape'][1:])}]"
            )
    return arrays


def _fp32_outputs(fmt: str, data: bytes, name: str, values: np.ndarray) -> np.ndarray:
    """The model's own outputs for the reference inputs, one sample at a time."""
    outputs = []
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        run = lambda x: session.run(None, {name: x})[0]  # noqa: E731
    elif fmt == "tflite":
        interpreter = validation.tflite_interpreter(data)
        index = interpreter.get_input_details()[0]["index"]
        out = interpreter.get_output_details()[0]["index"]

        def run(x):
            interpreter.set_tensor(index, x)
            interpreter.invoke()
            return interpreter.get_tensor(out)
    else:
        import openvino

        xml, weights = validation.unpack_ir(data)
        core = openvino.Core()
        compiled = core.compile_model(
            core.read_model(xml, weights), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        run = lambda x: compiled(x)[0]  # noqa: E731
    for row in values:
        outputs.append(np.asarray(run(row[np.newaxis])))
    return np.concatenate(outputs)


def prepare(
    path: Path,
    name: str,
    precision: str,
    shapes: dict[str, list[int]],
    sample_path: Path | None,
) -> Candidate:
    """Every check and conversion, before anything is stored."""
    if not NAME_PATTERN.match(name):
        raise ModelRejected(
            f"model name {name!r}: use letters, digits, '_', '.', '-' (up to 128, no spaces)"
        )
    fmt, data = read_model_file(path)
    if fmt == "tflite-edgetpu" and precision != "int8":
        raise ModelRejected(
            f"{path} is compiled for the Edge TPU, which runs int8: --precision int8"
        )
    try:
        declared = validation.describe(data, fmt)
    except validation.InvalidModel as exc:
        raise ModelRejected(f"{path}: {exc}") from None
    inputs = resolve_inputs(declared, shapes)
    sample = load_sample(sample_path, inputs) if sample_path else None
    candidate = Candidate(name, fmt, precision, data, inputs)
    if fmt == "onnx":
        for variant, fp16 in (("fp32", False), ("fp16", True)):
            if precision != "fp32" and variant == "fp16":
                continue
            try:
                ir, recipe = converters.onnx_to_openvino_ir(data, fp16)
            except Exception as exc:  # onnxruntime loads it, OpenVINO cannot: say so, go on
                candidate.notes.append(
                    f"no OpenVINO IR variant: OpenVINO could not convert it "
                    f"({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1]})"
                )
                break
            candidate.derived.append(
                ("openvino-ir", variant if precision == "fp32" else precision, ir, recipe)
            )
    elif fmt == "tflite" and importlib.util.find_spec("tf2onnx") is not None:
        onnx_bytes, recipe = _tflite_to_onnx(data)
        if onnx_bytes is not None:
            candidate.derived.append(("onnx", precision, onnx_bytes, recipe))
        else:
            candidate.notes.append(f"no ONNX variant: {recipe['error']}")
    elif fmt == "tflite":
        candidate.notes.append("no ONNX variant: tf2onnx is not installed (edgebench[modelzoo])")
    elif fmt == "tflite-edgetpu":
        candidate.notes.append(
            "an Edge TPU model runs only with the Edge TPU: no variants, no reference"
        )
        return candidate
    reference_inputs = _reference_inputs(inputs, sample)
    if reference_inputs is None:
        candidate.notes.append(
            "no reference outputs (fidelity will be null): the model has several inputs or "
            "integer inputs; pass --sample-input to give real values"
        )
    elif precision == "fp32":
        node = inputs[0]
        outputs = _fp32_outputs(fmt, data, node["name"], reference_inputs.astype(node["dtype"]))
        buffer = io.BytesIO()
        np.savez(buffer, inputs=reference_inputs, outputs=outputs.astype(np.float32))
        candidate.reference = buffer.getvalue()
    else:
        candidate.notes.append("no reference outputs: they come from an fp32 model")
    return candidate


def _tflite_to_onnx(data: bytes) -> tuple[bytes | None, dict]:
    import tempfile

    import tf2onnx

    with tempfile.NamedTemporaryFile(suffix=".tflite") as handle:
        handle.write(data)
        handle.flush()
        try:
            proto, _ = tf2onnx.convert.from_tflite(handle.name, opset=converters.OPSET)
        except Exception as exc:  # a converter that cannot take this model: say so, go on
            return None, {"error": f"tf2onnx could not convert it ({type(exc).__name__}: {exc})"}
    recipe = {
        "converter": "tf2onnx.convert.from_tflite",
        "tf2onnx": converters.version_of("tf2onnx"),
    }
    try:
        validation.describe(proto.SerializeToString(), "onnx")
    except validation.InvalidModel as exc:
        return None, {"error": f"the converted ONNX does not load ({exc})"}
    return proto.SerializeToString(), recipe


def register(
    session: Session,
    artifact_dir: Path,
    candidate: Candidate,
    *,
    source: str,
    task: str,
    license_name: str,
    version: str,
    sample_path: Path | None,
) -> list[tuple[str, str, int]]:
    if session.scalar(select(ModelCard).where(ModelCard.name == candidate.name)) is not None:
        raise ModelRejected(f"a model named {candidate.name!r} exists: `models remove` it first")
    if session.scalar(select(Model).where(Model.name == candidate.name)) is not None:
        raise ModelRejected(f"a model named {candidate.name!r} exists: `models remove` it first")
    from orchestrator.artifacts.registry import register_artifact

    stored = []
    original = {"made_by": "user upload", "file": source}
    shapes = {node["name"]: node["shape"] for node in candidate.inputs}
    size = register_artifact(
        session,
        artifact_dir,
        candidate.name,
        candidate.fmt,
        candidate.precision,
        candidate.data,
        original,
        shapes,
    )
    stored.append((candidate.fmt, candidate.precision, size))
    for fmt, precision, data, recipe in candidate.derived:
        recipe = {**recipe, "from": f"{candidate.fmt} {candidate.precision} (user upload)"}
        size = register_artifact(
            session, artifact_dir, candidate.name, fmt, precision, data, recipe, shapes
        )
        stored.append((fmt, precision, size))
    data_files: dict[str, Any] = {}
    if candidate.reference is not None:
        digest, path = content_store.put(artifact_dir, candidate.reference, ".npz")
        data_files["reference"] = {
            "sha256": digest,
            "size": len(candidate.reference),
            "path": str(path.resolve()),
        }
    if sample_path is not None:
        raw = sample_path.read_bytes()
        digest, path = content_store.put(artifact_dir, raw, ".npz")
        data_files["sample_input"] = {
            "sha256": digest,
            "size": len(raw),
            "path": str(path.resolve()),
        }
    repository.upsert_card(
        session,
        {
            "name": candidate.name,
            "family": candidate.name,
            "input_size": None,
            "version": version,
            "task": task,
            "layout": None,
            "preprocessing": {},
            "inputs": candidate.inputs,
            "source": source,
            "license": license_name,
            "data": data_files,
            "recipe": {"made_by": "user upload", "notes": candidate.notes},
        },
    )
    return stored
