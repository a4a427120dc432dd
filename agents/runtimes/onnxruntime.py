"""ONNX Runtime adapter (CPU execution provider in this version)."""

from __future__ import annotations

import importlib.util
from typing import Any, Dict, List, Optional

# Requested device name -> ONNX Runtime execution provider.
PROVIDERS = {
    "CPU": "CPUExecutionProvider",
    "CUDA": "CUDAExecutionProvider",
    "TensorRT": "TensorrtExecutionProvider",
    "OpenVINO": "OpenVINOExecutionProvider",
}
_DEVICE_OF = {provider: device for device, provider in PROVIDERS.items()}


class LoadedOnnxModel:
    def __init__(self, session: Any, requested_provider: str) -> None:
        self._session = session
        self._requested = requested_provider

    def inputs(self) -> List[Dict[str, Any]]:
        return [
            {
                "name": node.name,
                "shape": [dim if isinstance(dim, int) else None for dim in node.shape],
                "dtype": _numpy_dtype(node.type),
            }
            for node in self._session.get_inputs()
        ]

    def run(self, feed: Dict[str, Any]) -> List[Any]:
        return self._session.run(None, feed)

    def placement(self) -> Dict[str, Any]:
        used = self._session.get_providers()
        actual = _DEVICE_OF.get(used[0], used[0]) if used else None
        return {
            "providers": used,
            "requested_provider": self._requested,
            "actual_device": actual,
            "fallback": bool(used) and used[0] != self._requested,
        }

    def close(self) -> None:
        self._session = None


class OnnxRuntimeAdapter:
    name = "onnxruntime"
    import_name = "onnxruntime"  # the module whose import time counts as cold start

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def version(self) -> Optional[str]:
        if not self.available():
            return None
        import onnxruntime

        return onnxruntime.__version__

    def devices(self) -> List[str]:
        if not self.available():
            return []
        import onnxruntime

        offered = onnxruntime.get_available_providers()
        return [device for device, provider in PROVIDERS.items() if provider in offered]

    def load(self, path: str, options: Optional[Dict[str, Any]] = None) -> LoadedOnnxModel:
        import onnxruntime

        options = options or {}
        device = options.get("device", "CPU")
        provider = PROVIDERS.get(device)
        if provider is None:
            raise ValueError(
                f"onnxruntime has no device {device!r} (known: {', '.join(PROVIDERS)})"
            )
        session_options = onnxruntime.SessionOptions()
        if options.get("intra_op_threads"):
            session_options.intra_op_num_threads = int(options["intra_op_threads"])
        providers = (
            [provider] if provider == "CPUExecutionProvider" else [provider, PROVIDERS["CPU"]]
        )
        session = onnxruntime.InferenceSession(path, session_options, providers=providers)
        return LoadedOnnxModel(session, provider)


def _numpy_dtype(onnx_type: str) -> str:
    mapping = {
        "tensor(float)": "float32",
        "tensor(float16)": "float16",
        "tensor(double)": "float64",
        "tensor(int8)": "int8",
        "tensor(int16)": "int16",
        "tensor(uint16)": "uint16",
        "tensor(uint32)": "uint32",
        "tensor(uint64)": "uint64",
        "tensor(uint8)": "uint8",
        "tensor(int32)": "int32",
        "tensor(int64)": "int64",
        "tensor(bool)": "bool",
    }
    return mapping.get(onnx_type, onnx_type)
