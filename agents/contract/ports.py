"""A model's inputs and outputs as each runtime describes them, in one form: name, shape
(None where an axis is dynamic) and dtype (numpy's name), with what the runtime adds
(ONNX's symbolic axis names, a quantized LiteRT tensor's scale and zero point).

One reader per runtime, used on both sides: by the runtime adapters on the model they
loaded (agents/runtimes), and by the controller on an uploaded file before it is stored
(orchestrator/artifacts/validation.py), so a model is registered with the inputs its
runtime will see. Each takes the runtime's own objects; none imports a runtime.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List

Port = Dict[str, Any]

# onnxruntime's type names ("tensor(float)") whose numpy name is not the inner word.
_ONNX_TO_NUMPY = {"float": "float32", "double": "float64"}


def onnx_dtype(type_name: str) -> str:
    """numpy's name for an onnxruntime tensor type ("tensor(float)" -> "float32")."""
    inner = type_name[len("tensor(") : -1] if type_name.startswith("tensor(") else type_name
    return _ONNX_TO_NUMPY.get(inner, inner)


def onnxruntime_ports(nodes: Iterable[Any]) -> List[Port]:
    """An onnxruntime session's inputs or outputs (session.get_inputs())."""
    return [
        {
            "name": node.name,
            "shape": [d if isinstance(d, int) else None for d in node.shape],
            "dtype": onnx_dtype(node.type),
            # symbolic dimension names ("batch", "N"...), which say where the batch is
            "dim_names": [d if isinstance(d, str) else None for d in node.shape],
        }
        for node in nodes
    ]


def litert_ports(details: Iterable[Dict[str, Any]]) -> List[Port]:
    """A LiteRT interpreter's input or output details (get_input_details())."""
    import numpy as np

    described = []
    for detail in details:
        signature = list(detail.get("shape_signature", detail["shape"]))
        port = {
            "name": detail["name"],
            "shape": [int(d) if d >= 0 else None for d in signature],
            "dtype": np.dtype(detail["dtype"]).name,
        }
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if scale:
            port["quantization"] = [float(scale), int(zero_point)]
        described.append(port)
    return described


def openvino_ports(ports: Iterable[Any]) -> List[Port]:
    """An OpenVINO model's or compiled model's inputs or outputs (model.inputs)."""
    return [
        {
            "name": port.get_any_name(),
            "shape": [d.get_length() if d.is_static else None for d in port.get_partial_shape()],
            "dtype": port.get_element_type().to_dtype().name,
        }
        for port in ports
    ]
