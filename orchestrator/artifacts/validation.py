"""Load an artifact with the runtime that reads it: proof that it works, and its inputs.

Used on every built artifact before it is registered, and on every user model
(`models add`): a corrupt, truncated or wrong-format file is refused here, with the
runtime's own reason, before anything is stored.
"""

from __future__ import annotations

import io
import os
import tarfile
from typing import Any

from agents.contract import ports
from orchestrator.artifacts.converters import IR_BIN, IR_XML

# File suffix of each format in the content store.
SUFFIXES = {
    "onnx": ".onnx",
    "tflite": ".tflite",
    "tflite-edgetpu": "_edgetpu.tflite",
    "openvino-ir": ".ov.tar",
}
# The custom op edgetpu_compiler puts in a model: it only runs with the Edge TPU delegate.
EDGETPU_MARKER = b"edgetpu-custom-op"


class InvalidModel(ValueError):
    """The file is not a model its runtime can load."""


def describe(data: bytes, fmt: str) -> list[dict[str, Any]]:
    """The model's inputs as [{name, shape (None = dynamic), dtype}] (ONNX adds dim_names),
    loading it to check: read as its runtime's adapter reads them (agents.contract.ports)."""
    try:
        if fmt == "onnx":
            return _onnx_inputs(data)
        if fmt in ("tflite", "tflite-edgetpu"):
            return _tflite_inputs(data)
        if fmt == "openvino-ir":
            return _openvino_inputs(data)
    except InvalidModel:
        raise
    except Exception as exc:  # the runtime's own parse error is the reason
        raise InvalidModel(f"not a loadable {fmt} model: {exc}") from None
    raise InvalidModel(f"unknown model format {fmt!r} (known: {', '.join(SUFFIXES)})")


def _onnx_inputs(data: bytes) -> list[dict[str, Any]]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return ports.onnxruntime_ports(session.get_inputs())


def tflite_interpreter(data: bytes) -> Any:
    """A LiteRT interpreter on the model (ai_edge_litert, else tflite_runtime), allocated
    unless it is an Edge TPU model, which allocates only with its delegate."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
    interpreter = Interpreter(model_content=data)
    if EDGETPU_MARKER not in data:
        interpreter.allocate_tensors()
    return interpreter


def _tflite_inputs(data: bytes) -> list[dict[str, Any]]:
    return ports.litert_ports(tflite_interpreter(data).get_input_details())


def unpack_ir(data: bytes) -> tuple[bytes, bytes]:
    """(model.xml, model.bin) from an IR tar; InvalidModel when either is missing."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            if IR_XML not in members or IR_BIN not in members:
                raise InvalidModel(f"an OpenVINO IR tar needs {IR_XML} and {IR_BIN}")
            return (
                tar.extractfile(members[IR_XML]).read(),
                tar.extractfile(members[IR_BIN]).read(),
            )
    except tarfile.TarError as exc:
        raise InvalidModel(f"not an OpenVINO IR tar: {exc}") from None


def _openvino_inputs(data: bytes) -> list[dict[str, Any]]:
    import openvino

    xml, weights = unpack_ir(data)
    return ports.openvino_ports(openvino.Core().read_model(xml, weights).inputs)


def format_of(path: os.PathLike | str) -> str:
    """The model format a user's file name says, or InvalidModel naming what is accepted."""
    name = os.fspath(path).lower()
    for fmt, suffix in (("onnx", ".onnx"), ("tflite", ".tflite"), ("openvino-ir", ".xml")):
        if name.endswith(suffix):
            return fmt
    raise InvalidModel(f"{path}: unknown model file type (accepted: .onnx, .tflite, .xml + .bin)")
