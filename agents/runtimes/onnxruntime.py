"""ONNX Runtime adapter (CPU execution provider in this version)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from agents.contract import RuntimeOptions, ports
from agents.runtimes.seam import LoadedModel, Placement, RuntimeAdapter

# Requested device name -> ONNX Runtime execution provider.
PROVIDERS = {
    "CPU": "CPUExecutionProvider",
    "CUDA": "CUDAExecutionProvider",
    "TensorRT": "TensorrtExecutionProvider",
    "OpenVINO": "OpenVINOExecutionProvider",
}
_DEVICE_OF = {provider: device for device, provider in PROVIDERS.items()}
GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class LoadedOnnxModel(LoadedModel):
    def __init__(self, session: Any, requested_provider: str) -> None:
        self._session = session
        self._requested = requested_provider
        self.applied: Dict[str, Any] = {}
        self.runtime_cache = False

    def inputs(self) -> List[Dict[str, Any]]:
        return ports.onnxruntime_ports(self._session.get_inputs())

    def run(self, feed: Dict[str, Any]) -> List[Any]:
        return self._session.run(None, feed)

    def bind(self, feed: Dict[str, Any]) -> Callable[[], Any]:
        """The timed operation: inputs bound once (IOBinding), each call runs the model and
        leaves its outputs in host (CPU) memory, as onnxruntime_perf_test times it; its
        `outputs()` reads them as arrays (untimed: 3-4 us a query on a small model)."""
        binding = self._session.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, value)
        for output in self._session.get_outputs():
            binding.bind_output(output.name, "cpu")
        session = self._session

        def run_bound() -> None:
            session.run_with_iobinding(binding)

        run_bound.outputs = lambda: [value.numpy() for value in binding.get_outputs()]
        return run_bound

    def placement(self) -> Placement:
        used = self._session.get_providers()
        actual = _DEVICE_OF.get(used[0], used[0]) if used else None
        return Placement(
            requested_device=_DEVICE_OF.get(self._requested, self._requested),
            actual_device=actual,
            fallback=bool(used) and used[0] != self._requested,
            options=self.applied,
            runtime_cache=self.runtime_cache,
            detail={"providers": used, "requested_provider": self._requested},
        )

    def close(self) -> None:
        self._session = None


class OnnxRuntimeAdapter(RuntimeAdapter):
    name = "onnxruntime"
    import_candidates = ("onnxruntime",)
    options = RuntimeOptions.taken_by(
        "onnxruntime", "threads", "inter_op_threads", "graph_optimization", "trt_fp16"
    )

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

    def formats(self, device: str) -> List[str]:
        return ["onnx"]

    def precisions(self, device: str) -> List[str]:
        """What the provider computes in: CPU runs fp32 and int8 (QDQ) graphs; the GPU
        providers add fp16."""
        return ["fp32", "int8"] if device in ("CPU", "OpenVINO") else ["fp32", "fp16", "int8"]

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
        applied: Dict[str, Any] = {}
        threads = options.get("threads")
        if threads:
            session_options.intra_op_num_threads = applied["intra_op_threads"] = int(threads)
        if options.get("inter_op_threads"):
            # Inter-op threads only matter when independent nodes may run in parallel.
            session_options.execution_mode = onnxruntime.ExecutionMode.ORT_PARALLEL
            session_options.inter_op_num_threads = int(options["inter_op_threads"])
            applied["inter_op_threads"] = int(options["inter_op_threads"])
        level = options.get("graph_optimization")
        if level:
            session_options.graph_optimization_level = getattr(
                onnxruntime.GraphOptimizationLevel, GRAPH_OPTIMIZATION[level]
            )
            applied["graph_optimization"] = level
        provider_options: Dict[str, Any] = {}
        cached = False
        if provider == PROVIDERS["TensorRT"]:
            if options.get("trt_fp16") is not None:
                provider_options["trt_fp16_enable"] = bool(options["trt_fp16"])
            if options.get("cache_dir"):
                provider_options["trt_engine_cache_enable"] = True
                provider_options["trt_engine_cache_path"] = str(options["cache_dir"])
                cached = True
            applied.update(provider_options)
        providers: List[Any] = (
            [provider]
            if provider == "CPUExecutionProvider"
            else [(provider, provider_options), PROVIDERS["CPU"]]
        )
        session = onnxruntime.InferenceSession(path, session_options, providers=providers)
        loaded = LoadedOnnxModel(session, provider)
        loaded.applied, loaded.runtime_cache = applied, cached
        return loaded
