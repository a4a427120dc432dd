"""Registering a user's own model: validate it by loading it, derive the variants that can
be derived, compute its fp32 reference outputs, and record everything with how it was made.

Nothing is stored until every check has passed: a corrupt or truncated file, a
shape that would have to be guessed, or a sample file that does not fit is refused
with the reason.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.artifacts import (
    content_store,
    converters,
    input_shapes,
    reference_outputs,
    tflite_variants,
    user_variants,
    validation,
    variant_data,
)
from orchestrator.artifacts.input_shapes import ModelRejected
from orchestrator.artifacts.registry import build_log, register_artifact
from orchestrator.store import repository
from orchestrator.store.models import Model, ModelCard

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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
    # "runtime" or "runtime:precision" -> why it cannot run the model
    refused_by: dict[str, str] = field(default_factory=dict)


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


def _sample_shape_fits(array: np.ndarray, node: dict[str, Any]) -> bool:
    """The array has the input's shape, any number of rows on the batch axis (the fixed
    size, where the batch is fixed)."""
    shape, axis = node["shape"], node["batch_axis"]
    if array.ndim != len(shape):
        return False
    return all(
        (i == axis and d is None and n >= 1) or n == d
        for i, (n, d) in enumerate(zip(array.shape, shape))
    )


def load_sample(path: Path, inputs: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """A sample-input .npz: one array per model input, named as the input, with the input's
    shape (any number of rows on its batch axis), in the input's kind of number."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ModelRejected(f"{path}: not a readable .npz file ({exc})") from None
    for node in inputs:
        if node["name"] not in arrays:
            raise ModelRejected(
                f"{path}: no array named {node['name']!r} (it has: {', '.join(arrays) or 'none'})"
            )
        array = arrays[node["name"]]
        if not _sample_shape_fits(array, node):
            wanted = ",".join(
                "N" if i == node["batch_axis"] and d is None else str(d)
                for i, d in enumerate(node["shape"])
            )
            raise ModelRejected(
                f"{path}: {node['name']!r} has shape {list(array.shape)}, the input takes "
                f"[{wanted}]" + (" (a scalar)" if not node["shape"] else "")
            )
        kind = np.dtype(node["dtype"]).kind
        if array.dtype.kind in "fc" and kind in "iub":
            raise ModelRejected(
                f"{path}: {node['name']!r} holds {array.dtype} values, the input takes "
                f"{node['dtype']}: save it as {node['dtype']}"
            )
        arrays[node["name"]] = array.astype(node["dtype"])
    return arrays


def checked_inputs(
    declared: list[dict[str, Any]],
    shapes: dict[str, list[int]],
    axes: dict[str, int | None] | None,
    sample_path: Path | None,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray] | None]:
    """(the inputs resolved, the sample values): every shape and batch axis known, and real
    values for the inputs whose values matter."""
    needs_values = [] if sample_path else input_shapes.wide_integers(declared)
    refusals = []
    if needs_values:
        listed = ", ".join(repr(n) for n in needs_values)
        kinds = ", ".join(sorted({n["dtype"] for n in declared if n["name"] in needs_values}))
        refusals.append(
            f"input(s) {listed} take {kinds} values that matter (token ids, a sample rate, "
            "a size) and edgebench does not invent them: give --sample-input FILE.npz with "
            "one array per input, named as the input (np.savez)"
        )
    inputs = input_shapes.resolve(declared, shapes, axes, refusals)
    sample = load_sample(sample_path, inputs) if sample_path else None
    return inputs, sample


def prepare(
    path: Path,
    name: str,
    precision: str,
    shapes: dict[str, list[int]],
    sample_path: Path | None,
    axes: dict[str, int | None] | None = None,
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
    inputs, sample = checked_inputs(declared, shapes, axes, sample_path)
    candidate = Candidate(name, fmt, precision, data, inputs)
    if fmt == "tflite-edgetpu":
        candidate.notes.append(
            "an Edge TPU model runs only with the Edge TPU: no variants, no reference"
        )
        return candidate
    # Converters print (TensorFlow, OpenVINO, the quantizer): to a log, not the user.
    failure = None
    with build_log(Path(tempfile.gettempdir()) / "edgebench-models-add.log"):
        derive_variants(candidate, sample)
        if precision != "fp32":
            candidate.notes.append("no reference outputs: they come from an fp32 model")
            return candidate
        try:
            candidate.reference, why_not = reference_outputs.reference_file(
                fmt, data, inputs, sample
            )
        except Exception as exc:  # the model loads but does not run on these values
            failure = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1]}"
            why_not = None
    if failure:
        given = "the --sample-input values" if sample else "seeded inputs"
        raise ModelRejected(f"{path}: the model fails on {given} ({failure})")
    if why_not:
        candidate.notes.append(why_not)
    return candidate


def derive_variants(candidate: Candidate, sample: dict[str, np.ndarray] | None) -> None:
    """The variants the candidate's format allows, into candidate.derived; each one that
    cannot be made is a note (and a runtime that cannot read the model, refused_by)."""
    fmt, precision, data = candidate.fmt, candidate.precision, candidate.data
    if fmt == "onnx":
        for variant, fp16 in (("fp32", False), ("fp16", True)):
            if precision != "fp32" and variant == "fp16":
                continue
            try:
                ir, recipe = converters.onnx_to_openvino_ir(data, fp16)
            except Exception as exc:  # onnxruntime loads it, OpenVINO cannot: say so, go on
                reason = (
                    f"OpenVINO could not convert it "
                    f"({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1]})"
                )
                candidate.notes.append(f"no OpenVINO IR variant: {reason}")
                # OpenVINO would read the ONNX file the same way: plans skip it, saying why.
                candidate.refused_by["openvino"] = reason
                break
            candidate.derived.append(
                ("openvino-ir", variant if precision == "fp32" else precision, ir, recipe)
            )
        if precision == "fp32":
            for derive in (user_variants.onnx_variants, tflite_variants.tflite_variants):
                derived, notes, refused = derive(data, candidate.inputs, sample)
                candidate.derived += derived
                candidate.notes += notes
                candidate.refused_by.update(refused)
    elif fmt == "tflite" and importlib.util.find_spec("tf2onnx") is not None:
        onnx_bytes, recipe = _tflite_to_onnx(data)
        if onnx_bytes is not None:
            candidate.derived.append(("onnx", precision, onnx_bytes, recipe))
        else:
            candidate.notes.append(f"no ONNX variant: {recipe['error']}")
    elif fmt == "tflite":
        candidate.notes.append("no ONNX variant: tf2onnx is not installed (edgebench[modelzoo])")


def _tflite_to_onnx(data: bytes) -> tuple[bytes | None, dict]:
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


def _stored(artifact_dir: Path, data: bytes) -> dict[str, Any]:
    digest, path = content_store.put(artifact_dir, data, ".npz")
    return {"sha256": digest, "size": len(data), "path": str(path.resolve())}


def variant_files(
    artifact_dir: Path, candidate: Candidate, io_map: dict, sample_path: Path | None
) -> dict[str, Any]:
    """The reference and sample values in a variant's own terms, stored; {role: file}."""
    files = {}
    if candidate.reference is not None:
        reference = variant_data.reference_for(
            candidate.reference, io_map, candidate.data, candidate.inputs
        )
        files["reference"] = _stored(artifact_dir, reference)
    if sample_path is not None:
        sample = variant_data.sample_for(sample_path.read_bytes(), io_map)
        if sample is not None:
            files["sample_input"] = _stored(artifact_dir, sample)
    return files


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
    stored = []
    original = {"made_by": "user upload", "file": source}
    size = register_artifact(
        session,
        artifact_dir,
        candidate.name,
        candidate.fmt,
        candidate.precision,
        candidate.data,
        original,
        candidate.inputs,
    )
    stored.append((candidate.fmt, candidate.precision, size))
    for fmt, precision, data, recipe in candidate.derived:
        recipe = {**recipe, "from": f"{candidate.fmt} {candidate.precision} (user upload)"}
        registered = candidate.inputs
        if "io_map" in recipe and not variant_data.is_identity(recipe["io_map"]):
            # its own input names or output layout: its own reference and sample values
            registered = variant_data.renamed_inputs(candidate.inputs, recipe["io_map"])
            recipe["data"] = variant_files(artifact_dir, candidate, recipe["io_map"], sample_path)
        size = register_artifact(
            session, artifact_dir, candidate.name, fmt, precision, data, recipe, registered
        )
        stored.append((fmt, precision, size))
    data_files: dict[str, Any] = {}
    if candidate.reference is not None:
        data_files["reference"] = _stored(artifact_dir, candidate.reference)
    if sample_path is not None:
        data_files["sample_input"] = _stored(artifact_dir, sample_path.read_bytes())
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
            "recipe": {
                "made_by": "user upload",
                "notes": candidate.notes,
                "refused_by": candidate.refused_by,
            },
        },
    )
    return stored
