"""Apache TVM adapter: compiles the ONNX model on the device, for the device's own target.

TVM is a compiler, not an interpreter: load() imports the ONNX graph into Relax at the
trial's exact input shapes and compiles it (LLVM for the CPU, CUDA where TVM sees a GPU),
so the compile time is part of the trial's cold start (load_ms). The schedules are TVM's
defaults: nothing is tuned (MetaSchedule tuning takes minutes to hours per model and
device), and the placement says so, since an untuned CNN on the CPU runs many times
slower than a tuned one.

With the `cache` option the compiled module is exported as a shared library into the
trial's runtime cache, keyed by model, shapes, target and TVM version, and the second load
reads it back instead of compiling (a C compiler must be present to export).
Threads: TVM_NUM_THREADS, which TVM's thread pool reads when it first starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional

from agents.contract import RuntimeOptions
from agents.runtimes.seam import LoadedModel, Placement, Port, RuntimeAdapter

# What TVM's placement reports about the schedules it ran.
SCHEDULES = "TVM defaults, untuned"


def _tvm() -> Any:
    import tvm

    return tvm


def _tensor(value: Any, device: Any) -> Any:
    """A TVM tensor of the array on `device` (tvm.runtime.tensor from 0.21, nd.array before)."""
    tvm = _tvm()
    make = getattr(tvm.runtime, "tensor", None) or tvm.nd.array
    return make(value, device)


def _arrays(out: Any) -> List[Any]:
    """The VM's result (one tensor, or a tuple of them) as host arrays."""
    if hasattr(out, "numpy"):
        return [out.numpy()]
    return [item.numpy() for item in out]


def shapes_folded(model: Any, shapes: Dict[str, List[int]]) -> Any:
    """The model with its inputs fixed at `shapes` and the shape arithmetic computed into
    constants by onnxruntime's basic (semantics-preserving) optimizations. tf2onnx's
    flatten computes its target shape at run time (Shape, Gather, Cast, Slice, Concat),
    which TVM's ONNX importer refuses ("Reshape requires the input new shape to be
    Shape"). Where onnxruntime is not installed the model goes to TVM as it is."""
    try:
        import onnxruntime
    except ImportError:
        return model
    import tempfile

    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for node in fixed.graph.input:
        for dim, size in zip(node.type.tensor_type.shape.dim, shapes.get(node.name, [])):
            dim.dim_value = int(size)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with tempfile.TemporaryDirectory() as folder:
        options.optimized_model_filepath = os.path.join(folder, "folded.onnx")
        onnxruntime.InferenceSession(
            fixed.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        return onnx.load(options.optimized_model_filepath)


class CompiledShapes:
    """Compiles the ONNX model for given input shapes, through the runtime cache if any."""

    def __init__(self, path: str, device_name: str, cache_dir: Optional[str]) -> None:
        import onnx

        tvm = _tvm()
        with open(path, "rb") as handle:
            data = handle.read()
        self.model = onnx.load_from_string(data)
        self.model_sha = hashlib.sha256(data).hexdigest()
        self.device_name = device_name
        self.cache_dir = cache_dir
        self.target = tvm.target.Target("cuda" if device_name == "CUDA" else "llvm")
        self.device = tvm.cuda(0) if device_name == "CUDA" else tvm.cpu(0)
        initialized = {init.name for init in self.model.graph.initializer}
        self.input_names = [i.name for i in self.model.graph.input if i.name not in initialized]
        self.compile_ms: Optional[float] = None
        self.from_cache = False

    def vm(self, shapes: Dict[str, List[int]]) -> Any:
        """A Relax virtual machine running the model at these shapes."""
        tvm = _tvm()
        from tvm import relax

        cached = self._cache_path(shapes)
        started = time.perf_counter()
        if cached is not None and os.path.exists(cached):
            executable, self.from_cache = tvm.runtime.load_module(cached), True
        else:
            from tvm.relax.frontend.onnx import from_onnx

            model = shapes_folded(self.model, shapes)
            module = from_onnx(model, shape_dict=shapes, keep_params_in_input=False)
            build = getattr(tvm, "compile", None) or relax.build  # tvm.compile from 0.20
            executable = build(module, target=self.target)
            if cached is not None:
                executable.export_library(cached)
        self.compile_ms = (time.perf_counter() - started) * 1e3
        return relax.VirtualMachine(executable, self.device)

    def _cache_path(self, shapes: Dict[str, List[int]]) -> Optional[str]:
        if not self.cache_dir:
            return None
        key = json.dumps(
            [self.model_sha, shapes, str(self.target), _tvm().__version__], sort_keys=True
        )
        return os.path.join(self.cache_dir, hashlib.sha256(key.encode()).hexdigest() + ".so")


class LoadedTvmModel(LoadedModel):
    def __init__(self, compiled: CompiledShapes, shapes: Dict[str, List[int]]) -> None:
        self._compiled = compiled
        self._shapes = shapes
        self._vms: Dict[str, Any] = {self._key(shapes): compiled.vm(shapes)}
        self.compile_ms = compiled.compile_ms  # at the trial's shapes (later ones: fidelity)
        self._device = compiled.device
        self._last: Any = None
        self.applied: Dict[str, Any] = {}
        self.runtime_cache = bool(compiled.cache_dir)

    @staticmethod
    def _key(shapes: Dict[str, List[int]]) -> str:
        return json.dumps(shapes, sort_keys=True)

    def _main(self, shapes: Dict[str, List[int]]) -> Callable[..., Any]:
        """The compiled main function for these shapes; other shapes than the trial's (the
        fidelity check's last, smaller chunk) are compiled when first needed."""
        key = self._key(shapes)
        if key not in self._vms:
            self._vms[key] = self._compiled.vm(shapes)
        return self._vms[key]["main"]

    def inputs(self) -> List[Port]:
        from onnx import helper

        described = []
        for node in self._compiled.model.graph.input:
            if node.name not in self._compiled.input_names:
                continue
            elem_type = node.type.tensor_type.elem_type
            described.append(
                {
                    "name": node.name,
                    "shape": list(self._shapes.get(node.name, [])),
                    "dtype": helper.tensor_dtype_to_np_dtype(elem_type).name,
                }
            )
        return described

    def run(self, feed: Dict[str, Any]) -> List[Any]:
        names = self._compiled.input_names
        shapes = {name: list(feed[name].shape) for name in names}
        main = self._main(shapes)
        return _arrays(main(*(_tensor(feed[name], self._device) for name in names)))

    def bind(self, feed: Dict[str, Any]) -> Callable[[], Any]:
        """The timed operation: inputs copied into TVM tensors once; each call runs the
        compiled function, its outputs left in TVM tensors (host memory on the CPU)."""
        names = self._compiled.input_names
        tensors = [_tensor(feed[name], self._device) for name in names]
        main = self._main({name: list(feed[name].shape) for name in names})

        def run_bound() -> None:
            self._last = main(*tensors)

        run_bound.outputs = lambda: _arrays(self._last)  # type: ignore[attr-defined]
        return run_bound

    def placement(self) -> Placement:
        device = self._compiled.device_name
        return Placement(
            requested_device=device,
            actual_device=device,
            fallback=False,
            options={k: str(v) for k, v in self.applied.items()},
            runtime_cache=self.runtime_cache,
            detail={
                "target_kind": self._compiled.target.kind.name,  # llvm, cuda
                "target": str(self._compiled.target),
                "schedules": SCHEDULES,
                "loaded_from_cache": self._compiled.from_cache,
            },
        )

    def close(self) -> None:
        self._vms = {}
        self._last = None


class TvmAdapter(RuntimeAdapter):
    name = "tvm"
    import_candidates = ("tvm",)
    options = RuntimeOptions.taken_by("tvm", "threads")

    def version(self) -> Optional[str]:
        if not self.available():
            return None
        return str(_tvm().__version__)

    def devices(self) -> List[str]:
        if not self.available():
            return []
        return ["CPU", "CUDA"] if _tvm().cuda(0).exist else ["CPU"]

    def precisions(self, device: str) -> List[str]:
        """fp32 only: TVM's ONNX import of quantized (QDQ) graphs and fp16 are not set up."""
        return ["fp32"]

    def formats(self, device: str) -> List[str]:
        return ["onnx"]

    def load(self, path: str, options: Optional[Dict[str, Any]] = None) -> LoadedTvmModel:
        options = options or {}
        device = options.get("device", "CPU")
        if device not in self.devices():
            raise ValueError(f"TVM has no device {device!r} here (available: CPU)")
        applied: Dict[str, Any] = {}
        if options.get("threads"):
            os.environ["TVM_NUM_THREADS"] = str(int(options["threads"]))
            applied["TVM_NUM_THREADS"] = int(options["threads"])
        shapes = options.get("trial_shapes") or {}
        compiled = CompiledShapes(path, device, options.get("cache_dir"))
        missing = [name for name in compiled.input_names if name not in shapes]
        if missing:
            raise ValueError(f"TVM compiles for fixed shapes: no shape for {missing}")
        loaded = LoadedTvmModel(compiled, {name: shapes[name] for name in compiled.input_names})
        loaded.applied = applied
        return loaded
