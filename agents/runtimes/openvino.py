"""OpenVINO adapter: reads ONNX (or IR) models and compiles them for CPU, GPU, NPU, AUTO or,
with OpenVINO 2022.3, MYRIAD (the Neural Compute Stick 2).

Two generations of the Python API: today's (`import openvino; openvino.Core()`, 2023.1 on)
and 2022.3's (`openvino.runtime`, its top-level `openvino` an empty namespace package), the
last release with the MYRIAD plugin. Where 2022.3 lacks something, the fallback says so.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import tarfile
import time
from typing import Any, Callable, Dict, List, Optional

from agents.contract import RuntimeOptions, ports
from agents.contract.profile import OperatorProfile, OperatorRow, precision_of
from agents.runtimes.seam import LoadedModel, Placement, ProfileUnavailable, RuntimeAdapter

# AUTO lets OpenVINO choose; whatever it picks is not a fallback.
VIRTUAL_DEVICES = ("AUTO",)
# OpenVINO's CPU plugin silently computes in bf16 on CPUs that have it (AVX512-BF16, AMX):
# a trial asks for its precision explicitly, so an "fp32" number is an fp32 number.
PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
HINTED_DEVICES = ("CPU", "GPU")  # the plugins load() gives the hint


def _api_module_name() -> str:
    """The module that holds the API, found without importing OpenVINO (the runner times
    that import): `openvino` where the package has today's top-level API (_ov_api.py,
    2023.1 on), `openvino.runtime` where it has only that (2022.3)."""
    spec = importlib.util.find_spec("openvino")
    folders = list(spec.submodule_search_locations or []) if spec else []
    if any(os.path.exists(os.path.join(f, "_ov_api.py")) for f in folders):
        return "openvino"
    if any(os.path.isdir(os.path.join(f, "runtime")) for f in folders):
        return "openvino.runtime"
    return "openvino"


def _api() -> Any:
    """OpenVINO's API module: `openvino` itself, or 2022.3's `openvino.runtime`."""
    import openvino

    if hasattr(openvino, "Core"):
        return openvino
    import openvino.runtime

    return openvino.runtime


def _infer_shares(request: Any) -> bool:
    """Whether infer() can share inputs and outputs with the arrays (share_inputs=,
    share_outputs=, 2023.1 on); 2022.3's infer(inputs) takes neither and copies both ways."""
    try:
        return "share_outputs" in inspect.signature(request.infer).parameters
    except (TypeError, ValueError):  # no signature to read: the older call is safe
        return False


class LoadedOpenVinoModel(LoadedModel):
    def __init__(self, compiled: Any, requested: str, core: Any = None) -> None:
        # Kept alive with the model: once 2022.3's Core is gone, the compiled model answers
        # no property ("Unsupported ExecutableNetwork config key: NUM_STREAMS"), though it
        # still infers.
        self._core = core
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._requested = requested
        self._shares = _infer_shares(self._request)
        self.applied: Dict[str, Any] = {}
        self.runtime_cache = False
        # Compiled for the trial's exact shapes (as benchmark_app's -shape does: the CPU
        # plugin runs a dynamic batch up to 1.5x slower); feeds of other shapes (the last,
        # smaller chunk of the reference rows) go to a model compiled with the registered,
        # batch-dynamic shapes, on first need.
        self.static_shapes: Dict[str, List[int]] = {}
        self.compile_any_shape: Optional[Callable[[], Any]] = None
        self._any_shape_request: Any = None
        # The same model compiled again with performance counters on (they cost every run).
        self.compile_profiled: Optional[Callable[[], Any]] = None

    def inputs(self) -> List[Dict[str, Any]]:
        return ports.openvino_ports(self._compiled.inputs)

    def run(self, feed: Dict[str, Any]) -> List[Any]:
        # Zero-copy in and out, as a tuned application does; outputs are views that the next
        # run overwrites, so a caller that keeps them copies them. 2022.3 copies both ways.
        request = self._request if self._fits(feed) else self._any_shape()
        if not self._shares:
            return list(request.infer(feed).values())
        results = request.infer(feed, share_inputs=True, share_outputs=True)
        return list(results.values())

    def _fits(self, feed: Dict[str, Any]) -> bool:
        """Whether the feed has the shapes the model was compiled for (any, if not static)."""
        return all(
            list(getattr(value, "shape", ())) == self.static_shapes[name]
            for name, value in feed.items()
            if name in self.static_shapes
        )

    def _any_shape(self) -> Any:
        if self._any_shape_request is None:
            if self.compile_any_shape is None:
                raise ValueError(f"the model was compiled for the shapes {self.static_shapes}")
            self._any_shape_request = self.compile_any_shape().create_infer_request()
        return self._any_shape_request

    def bind(self, feed: Dict[str, Any]) -> Callable[[], Any]:
        """The timed operation: input tensors set once, sharing the arrays' memory; each call
        infers and leaves the outputs in the request's host tensors, as benchmark_app times
        it; its `outputs()` reads them (untimed: wrapping them costs ~20 us a query here)."""
        tensor = _api().Tensor
        for name, value in feed.items():
            self._request.set_tensor(name, tensor(value, shared_memory=True))
        request = self._request

        def run_bound() -> None:
            request.infer()

        run_bound.outputs = lambda: [tensor.data.copy() for tensor in request.output_tensors]
        return run_bound

    def internal_latency_ms(self) -> float:
        """OpenVINO's own measure of the last inference (what benchmark_app reports)."""
        return float(self._request.latency)

    def placement(self) -> Placement:
        try:
            executed = list(self._compiled.get_property("EXECUTION_DEVICES"))
        except RuntimeError:
            # 2022.3's device plugins (CPU, MYRIAD) lack the property ("Unsupported
            # ExecutableNetwork config key"); only AUTO has it. A model compiled for one named
            # device runs on it: no plugin moves it elsewhere. AUTO's choice stays unknown.
            executed = [] if self._requested in VIRTUAL_DEVICES else [self._requested]
        actual = ",".join(executed) if executed else None
        fallback = None
        if executed:
            fallback = self._requested not in VIRTUAL_DEVICES and any(
                not device.startswith(self._requested) for device in executed
            )
        try:
            precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except RuntimeError:  # a plugin without the property
            precision = None
        return Placement(
            requested_device=self._requested,
            actual_device=actual,
            fallback=fallback,
            options={k: str(v) for k, v in self.applied.items()},
            runtime_cache=self.runtime_cache,
            detail={
                "execution_devices": executed,
                "inference_precision": precision,
                "streams": _property(self._compiled, "NUM_STREAMS"),
                "threads": _property(self._compiled, "INFERENCE_NUM_THREADS"),
            },
        )

    def profile(self, feed: Dict[str, Any], queries: int) -> OperatorProfile:
        """OpenVINO's performance counters (PERF_COUNT), in a second compiled model: one
        query to warm it, then `queries`, each layer's real time read after each; the layer
        type, its kernel (exec type: ISA and precision executed) and whether it ran."""
        if self.compile_profiled is None:
            raise ProfileUnavailable("this model was not loaded by the adapter")
        request = self.compile_profiled().create_infer_request()
        tensor = _api().Tensor
        for name, value in feed.items():
            request.set_tensor(name, tensor(value, shared_memory=True))
        request.infer()
        layers: Dict[str, Dict[str, Any]] = {}
        wall_ns = 0
        for _ in range(queries):
            started = time.perf_counter_ns()
            request.infer()
            wall_ns += time.perf_counter_ns() - started
            for info in request.profiling_info:
                if not str(info.status).endswith("EXECUTED"):  # fused away, not run
                    continue
                layer = layers.setdefault(
                    info.node_name, {"type": info.node_type, "kernel": info.exec_type, "us": 0.0,
                                     "calls": 0}
                )  # fmt: skip
                layer["us"] += info.real_time.total_seconds() * 1e6
                layer["calls"] += 1
        return OperatorProfile(
            method="OpenVINO performance counters (PERF_COUNT)",
            requested_unit=self._requested,
            queries=queries,
            wall_ms=wall_ns / 1e6 / queries,
            ops=[
                layer_row(name, layer, self._requested, queries) for name, layer in layers.items()
            ],
            note="layer real times: the plugin's scheduling and the request's input and "
            "output handling are in the wall time, not in any layer",
        )

    def close(self) -> None:
        self._request = None
        self._any_shape_request = None
        self.compile_any_shape = None
        self.compile_profiled = None
        self._compiled = None
        self._core = None


def layer_row(name: str, layer: Dict[str, Any], device: str, queries: int) -> OperatorRow:
    """One executed layer: its exec type names the kernel and, last, the precision it ran
    in (jit_avx2_FP32, brgemm_avx512_amx_I8, ref_any_FP32: a reference kernel)."""
    kernel = str(layer["kernel"])
    return OperatorRow(
        node=name,
        op_type=str(layer["type"]),
        calls=layer["calls"] / queries,
        time_us=layer["us"] / queries,
        unit=device,
        precision=precision_of(kernel.rsplit("_", 1)[-1]),
        kernel=kernel,
        fallback=False,  # a plugin runs every layer it compiled; HETERO is not offered
    )


def _property(compiled: Any, name: str) -> Optional[str]:
    """A compiled model's property as text, or None where the plugin lacks it."""
    try:
        return str(compiled.get_property(name))
    except RuntimeError:
        return None


class OpenVinoAdapter(RuntimeAdapter):
    name = "openvino"
    import_candidates = ("openvino",)
    options = RuntimeOptions.taken_by("openvino", "threads", "num_streams", "performance_hint")

    @property
    def import_name(self) -> str:
        """The module the runner times as the runtime's import: 2022.3's `openvino` is an
        empty namespace package, its runtime loads with `openvino.runtime`."""
        return _api_module_name()

    def version(self) -> Optional[str]:
        if not self.available():
            return None
        # 2022.3 has get_version() in openvino.runtime only: "2022.3.2-9279-e2c7e4d7b4d-..."
        return _api().get_version().split("-")[0]

    def devices(self) -> List[str]:
        if not self.available():
            return []
        # 2022.3 lists "MYRIAD" where a Neural Compute Stick 2 is plugged in (and its
        # plugin installed: the PyPI wheel has CPU, GPU, AUTO and HETERO only).
        found = list(_api().Core().available_devices)
        return found + list(VIRTUAL_DEVICES) if found else []

    def formats(self, device: str) -> List[str]:
        """Its own IR first (no conversion at load), else the ONNX file read directly."""
        return ["openvino-ir", "onnx"]

    def precisions(self, device: str) -> List[str]:
        """The plugin's own OPTIMIZATION_CAPABILITIES (FP32, FP16, BF16, INT8...), lowered;
        AUTO runs what the devices under it run. Where load() gives a precision hint, the
        ones the plugin refuses as a hint are left out: 2022.3's CPU plugin lists FP16 (it
        reads fp16 models) but computes in bf16 or f32 only ("Wrong value for property key
        INFERENCE_PRECISION_HINT. Supported values: bf16, f32")."""
        core = _api().Core()
        devices = list(core.available_devices) if device in VIRTUAL_DEVICES else [device]
        found: List[str] = []
        for name in devices:
            try:
                capabilities = core.get_property(name, "OPTIMIZATION_CAPABILITIES")
            except RuntimeError:
                continue
            for capability in capabilities:
                precision = str(capability).lower()
                if precision in ("fp32", "fp16", "bf16", "int8") and precision not in found:
                    found.append(precision)
        if device.split(".")[0] in HINTED_DEVICES:
            found = [p for p in found if not _hint_refused(core, device, p)]
        return found

    def load(self, path: str, options: Optional[Dict[str, Any]] = None) -> LoadedOpenVinoModel:
        options = options or {}
        device = options.get("device", "CPU")
        core = _api().Core()
        known = list(core.available_devices) + list(VIRTUAL_DEVICES)
        if not any(device == k or device.startswith(k.split(".")[0]) for k in known):
            raise ValueError(
                f"OpenVINO has no device {device!r} here (available: {', '.join(known)})"
            )
        config = {"PERFORMANCE_HINT": str(options.get("performance_hint") or "latency").upper()}
        precision = PRECISION_HINTS.get(options.get("precision", "fp32"))
        if precision and device.split(".")[0] in HINTED_DEVICES:
            config["INFERENCE_PRECISION_HINT"] = precision
        if options.get("cache_dir"):
            config["CACHE_DIR"] = str(options["cache_dir"])
        if options.get("num_streams"):
            config["NUM_STREAMS"] = str(options["num_streams"])
        if options.get("threads") and device.startswith("CPU"):
            config["INFERENCE_NUM_THREADS"] = int(options["threads"])
        registered = options.get("input_shapes") or {}

        def any_shape(model: Any) -> Any:
            """The model at its registered shapes, the batch left dynamic."""
            fixed = registered_shapes(model, registered)
            if fixed:
                model.reshape(fixed)
            return model

        def compile_any_shape() -> Any:
            return core.compile_model(any_shape(read_model(core, path)), device, config)

        def trial_shapes(model: Any) -> Any:
            if static:
                model.reshape({name: _api().PartialShape(shape) for name, shape in static.items()})
            else:
                any_shape(model)
            return model

        model = read_model(core, path)
        static = static_shapes(model, options.get("trial_shapes") or {})
        trial_shapes(model)
        started = time.perf_counter_ns()
        compiled = core.compile_model(model, device, config)
        loaded = LoadedOpenVinoModel(compiled, device, core)
        loaded.compile_ms = (time.perf_counter_ns() - started) / 1e6
        loaded.compile_profiled = lambda: core.compile_model(
            trial_shapes(read_model(core, path)), device, {**config, "PERF_COUNT": "YES"}
        )
        if static:
            loaded.static_shapes, loaded.compile_any_shape = static, compile_any_shape
        loaded.applied, loaded.runtime_cache = dict(config), bool(options.get("cache_dir"))
        if static:
            loaded.applied["static_shapes"] = static
        return loaded


def _hint_refused(core: Any, device: str, precision: str) -> bool:
    """Whether the plugin refuses `precision` as its inference precision hint (set on this
    throwaway Core only)."""
    hint = PRECISION_HINTS.get(precision)
    if hint is None:
        return False
    try:
        core.set_property(device, {"INFERENCE_PRECISION_HINT": hint})
    except RuntimeError:
        return True
    return False


def static_shapes(model: Any, shapes: Dict[str, List[int]]) -> Dict[str, List[int]]:
    """The trial's concrete shape for each input the file leaves dynamic, where every input
    can be made static (each has a concrete shape of its rank); empty otherwise, and where the
    file is static already."""
    found = {}
    for port in model.inputs:
        shape = shapes.get(port.get_any_name())
        partial = port.get_partial_shape()
        if partial.is_static:
            continue
        if shape is None or len(shape) != len(partial) or any(d is None for d in shape):
            return {}
        found[port.get_any_name()] = [int(d) for d in shape]
    return found


def registered_shapes(model: Any, shapes: Dict[str, List[Optional[int]]]) -> Dict[str, Any]:
    """The reshape that fixes what the registration knows and the model file leaves
    dynamic, the batch (None) staying dynamic; empty where the model needs none."""
    api = _api()
    fixed = {}
    for port in model.inputs:
        shape = shapes.get(port.get_any_name())
        partial = port.get_partial_shape()
        if shape is None or partial.is_static or len(shape) != len(partial):
            continue
        if all((d is None) == (not dim.is_static) for d, dim in zip(shape, partial)):
            continue  # dynamic exactly where the registration is: nothing to fix
        fixed[port.get_any_name()] = api.PartialShape(
            [api.Dimension() if d is None else api.Dimension(d) for d in shape]
        )
    return fixed


def read_model(core: Any, path: str) -> Any:
    """An ONNX or IR file, or an IR packed as a tar of model.xml and model.bin (how the
    controller stores and sends an IR: one file, one hash)."""
    if not tarfile.is_tarfile(path):
        return core.read_model(path)
    with tarfile.open(path, mode="r:") as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        if "model.xml" not in members or "model.bin" not in members:
            raise ValueError("an OpenVINO IR tar needs model.xml and model.bin")
        xml = tar.extractfile(members["model.xml"]).read()
        weights = tar.extractfile(members["model.bin"]).read()
    return core.read_model(xml, weights)
