"""ONNX Runtime adapter (CPU execution provider in this version)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Callable, Dict, List, Optional

from agents.contract import RuntimeOptions, ports
from agents.contract.profile import OperatorProfile, OperatorRow, precision_of
from agents.runtimes.seam import (
    LoadedModel,
    Placement,
    ProfileUnavailable,
    RuntimeAdapter,
    profile_wall_ms,
)

# Requested device name -> ONNX Runtime execution provider.
PROVIDERS = {
    "CPU": "CPUExecutionProvider",
    "CUDA": "CUDAExecutionProvider",
    "TensorRT": "TensorrtExecutionProvider",
    "OpenVINO": "OpenVINOExecutionProvider",
}
_DEVICE_OF = {provider: device for device, provider in PROVIDERS.items()}
# Where the nodes a provider rejects go, in order: TensorRT's to CUDA before the CPU (without
# CUDA between, every node TensorRT refuses ran on the CPU, unseen). The profile says which
# node ran where.
FALLBACKS = {
    PROVIDERS["TensorRT"]: (PROVIDERS["CUDA"], PROVIDERS["CPU"]),
    PROVIDERS["CUDA"]: (PROVIDERS["CPU"],),
    PROVIDERS["OpenVINO"]: (PROVIDERS["CPU"],),
}
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
        # A second session of the same model, options and providers, with profiling on.
        self.profiling_session: Optional[Callable[[str], Any]] = None

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

    def profile(self, feed: Dict[str, Any], queries: int) -> OperatorProfile:
        """onnxruntime's session profiling, in a second session (profiling slows every run):
        one query to warm it, then `queries` bound ones; each node's kernel time and the
        execution provider that ran it, from the profile's events."""
        if self.profiling_session is None:
            raise ProfileUnavailable("this session was not loaded by the adapter")
        with tempfile.TemporaryDirectory(prefix="edgebench-ort-profile-") as folder:
            session = self.profiling_session(os.path.join(folder, "profile"))
            profiled = LoadedOnnxModel(session, self._requested)
            wall_ms = profile_wall_ms(profiled.bind(feed), queries)
            with open(session.end_profiling()) as file:
                events = json.load(file)
        return OperatorProfile(
            method=f"onnxruntime session profiling ({len(events)} events)",
            requested_unit=_DEVICE_OF.get(self._requested, self._requested),
            queries=queries,
            wall_ms=wall_ms,
            ops=node_rows(events, self._requested, queries),
            note="kernel times only: the session's own work between kernels (input and "
            "output copies, scheduling) is in the wall time, not in any operator",
        )

    def close(self) -> None:
        self._session = None
        self.profiling_session = None


def node_rows(events: List[Dict[str, Any]], requested: str, queries: int) -> List[OperatorRow]:
    """The profile's node events after the first run (the warm-up) as one row a node: its
    kernel time per query, its provider, the precision of its first input."""
    runs = sorted(e["ts"] + e["dur"] for e in events if e.get("name") == "model_run")
    after_warm_up = runs[0] if runs else 0
    nodes: Dict[str, Dict[str, Any]] = {}
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        if event["ts"] < after_warm_up:
            continue
        args = event.get("args", {})
        node = nodes.setdefault(
            name[: -len("_kernel_time")],
            {"op_type": args.get("op_name", "?"), "provider": args.get("provider", "?"),
             "types": args.get("input_type_shape") or [], "calls": 0, "us": 0.0},
        )  # fmt: skip
        node["calls"] += 1
        node["us"] += float(event.get("dur", 0))
    return [
        OperatorRow(
            node=name,
            op_type=node["op_type"],
            calls=node["calls"] / queries,
            time_us=node["us"] / queries,
            unit=_DEVICE_OF.get(node["provider"], node["provider"]),
            precision=next(  # the first input whose type names a precision (not int64)
                (p for shape in node["types"] for dtype in shape if (p := precision_of(dtype))),
                None,
            ),
            fallback=node["provider"] != requested,
        )
        for name, node in nodes.items()
    ]


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
        applied: Dict[str, Any] = {}
        session_options = _session_options(onnxruntime, options, applied)
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
        providers: List[Any] = [
            (provider, provider_options),
            *(p for p in FALLBACKS.get(provider, ()) if p in onnxruntime.get_available_providers()),
        ]
        session = onnxruntime.InferenceSession(path, session_options, providers=providers)
        loaded = LoadedOnnxModel(session, provider)
        loaded.applied, loaded.runtime_cache = applied, cached

        def profiling_session(prefix: str) -> Any:
            profiled = _session_options(onnxruntime, options, {})
            profiled.enable_profiling, profiled.profile_file_prefix = True, prefix
            return onnxruntime.InferenceSession(path, profiled, providers=providers)

        loaded.profiling_session = profiling_session
        return loaded


def _session_options(onnxruntime: Any, options: Dict[str, Any], applied: Dict[str, Any]) -> Any:
    """The session's options from the trial's runtime options; what it applied, in `applied`."""
    session_options = onnxruntime.SessionOptions()
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
    return session_options
