"""LiteRT (TensorFlow Lite) adapter: ``ai_edge_litert`` first, ``tflite_runtime`` on old images.

Devices: CPU (XNNPACK, LiteRT's default CPU path), EdgeTPU (the Coral delegate,
``libedgetpu.so.1``, which only runs models compiled by ``edgetpu_compiler``) and GPU
(the GPU delegate library, where the board ships one). The placement says which delegate
was applied and whether it took the whole graph.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import importlib.util
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from agents.contract import RuntimeOptions, ports
from agents.contract.profile import OperatorProfile, OperatorRow, precision_of
from agents.runtimes.seam import LoadedModel, Placement, RuntimeAdapter, profile_wall_ms

# Interpreter modules, preferred first: tflite-runtime 2.14 breaks with numpy 2.
MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
EDGETPU_LIBRARY = "libedgetpu.so.1"
GPU_LIBRARY = "libtensorflowlite_gpu_delegate.so"
# The custom op edgetpu_compiler puts in a model; without it the Edge TPU does nothing.
EDGETPU_MARKER = b"edgetpu-custom-op"


def _library_present(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def is_edgetpu_compiled(model_bytes: bytes) -> bool:
    return EDGETPU_MARKER in model_bytes


class LoadedLiteRtModel(LoadedModel):
    def __init__(self, interpreter: Any, requested: str, delegate: Optional[str]) -> None:
        self._interpreter = interpreter
        self._requested = requested
        self._delegate = delegate
        self._input_details = interpreter.get_input_details()
        self._output_details = interpreter.get_output_details()
        self.threads: Optional[int] = None

    def inputs(self) -> List[Dict[str, Any]]:
        return ports.litert_ports(self._input_details)

    def outputs(self) -> List[Dict[str, Any]]:
        return ports.litert_ports(self._output_details)

    def prepare(self, shapes: Dict[str, List[int]]) -> None:
        """Size every input to the trial's shapes (LiteRT tensors are static once allocated):
        the batch on its axis, and the dimensions the registration fixed."""
        current = {d["name"]: list(d["shape"]) for d in self._input_details}
        if all(current[name] == list(shape) for name, shape in shapes.items() if name in current):
            return
        for detail in self._input_details:
            shape = shapes.get(detail["name"])
            if shape is not None:
                self._interpreter.resize_tensor_input(detail["index"], list(shape), strict=False)
        self._interpreter.allocate_tensors()
        self._input_details = self._interpreter.get_input_details()
        self._output_details = self._interpreter.get_output_details()

    def _set_inputs(self, feed: Dict[str, Any]) -> None:
        self.prepare({name: list(value.shape) for name, value in feed.items()})
        for detail in self._input_details:
            self._interpreter.set_tensor(detail["index"], feed[detail["name"]])

    def run(self, feed: Dict[str, Any]) -> List[Any]:
        self._set_inputs(feed)
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(d["index"]) for d in self._output_details]

    def bind(self, feed: Dict[str, Any]) -> Callable[[], Any]:
        """The timed operation: inputs copied into the interpreter once; each call invokes it
        and leaves the outputs in its host buffers, as LiteRT's benchmark_model times it;
        its `outputs()` reads them (get_tensor copies, untimed)."""
        self._set_inputs(feed)
        interpreter, outputs = self._interpreter, self._output_details

        def run_bound() -> None:
            interpreter.invoke()

        run_bound.outputs = lambda: [interpreter.get_tensor(d["index"]) for d in outputs]
        return run_bound

    def placement(self) -> Placement:
        partitions, fully = delegation(self._interpreter)
        applied = partitions > 0
        # XNNPACK is LiteRT's own CPU path: applied or not, the model ran on the CPU.
        actual = self._delegate if (self._delegate and applied) else "CPU"
        return Placement(
            requested_device=self._requested,
            actual_device=actual,
            fallback=actual != self._requested or (self._delegate is not None and not fully),
            options={"num_threads": self.threads} if self.threads else {},
            detail={
                "interpreter": self._interpreter.__class__.__module__,
                "delegate": (self._delegate or "XNNPACK") if applied else None,
                "delegate_applied": applied,
                "delegated_partitions": partitions,
                "fully_delegated": fully,
            },
        )

    def profile(self, feed: Dict[str, Any], queries: int) -> OperatorProfile:
        """Where each operator ran, from the interpreter's nodes (each delegate partition's
        members found between its boundary tensors), with the pass's wall time; no time
        per operator: LiteRT's Python API has no operator profiler (benchmark_model's
        --enable_op_profiling is a C++ binary the wheels do not ship), so they stay null."""
        wall_ms = profile_wall_ms(self.bind(feed), queries)
        applied = self._delegate or "XNNPACK"  # XNNPACK: LiteRT's own CPU delegate
        dtypes = {d["index"]: str(d["dtype"]) for d in self._interpreter.get_tensor_details()}
        rows = []
        for op, partition in op_partitions(self._interpreter._get_ops_details()):
            unit = applied if partition is not None else "CPU"
            first = next((t for t in op["inputs"] if t >= 0 and t in dtypes), None)
            rows.append(
                OperatorRow(
                    node=f"{op['op_name']}_{op['index']}", op_type=op["op_name"], calls=1,
                    unit=unit, kernel="builtin" if partition is None else f"partition {partition}",
                    precision=precision_of(dtypes[first]) if first is not None else None,
                    fallback=self._delegate is not None and partition is None,
                )
            )  # fmt: skip
        return OperatorProfile(
            method="LiteRT interpreter nodes and delegate partitions (no per-operator times)",
            requested_unit=self._requested,
            queries=queries,
            wall_ms=wall_ms,
            ops=rows,
            note="LiteRT's Python API has no operator profiler: where each operator ran is "
            "known, how long it took is not (null, never estimated)",
        )

    def close(self) -> None:
        self._interpreter = None


def op_partitions(nodes: List[Dict[str, Any]]) -> List[tuple]:
    """Each original node with the delegate partition that took it (its number), or None
    where the interpreter's own kernels ran it. A partition's members are the nodes between
    its DELEGATE node's input and output tensors."""
    originals = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in originals for t in n["outputs"]}
    by_index = {n["index"]: n for n in originals}
    member_of: Dict[int, int] = {}
    for number, delegate in enumerate(n for n in nodes if n["op_name"] == "DELEGATE"):
        boundary = {int(t) for t in delegate["inputs"]}
        stack = [int(t) for t in delegate["outputs"]]
        while stack:
            tensor = stack.pop()
            index = producer.get(tensor)
            if tensor in boundary or index is None or index in member_of:
                continue
            member_of[index] = number
            stack.extend(int(t) for t in by_index[index]["inputs"] if int(t) >= 0)
    return [(node, member_of.get(node["index"])) for node in originals]


def delegation(interpreter: Any) -> tuple:
    """(delegate partitions, whole graph delegated?) from the interpreter's nodes.

    LiteRT keeps the original nodes and appends one DELEGATE node per partition. The graph
    is fully delegated when there is one partition, fed only by graph inputs (or constants)
    and producing every graph output: any op left outside would feed it or follow it.
    """
    nodes = interpreter._get_ops_details()
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    if not delegates:
        return 0, False
    produced = {int(t) for n in nodes if n["op_name"] != "DELEGATE" for t in n["outputs"]}
    graph_inputs = {int(d["index"]) for d in interpreter.get_input_details()}
    graph_outputs = {int(d["index"]) for d in interpreter.get_output_details()}
    only = delegates[0]
    fed_from_inside = {int(t) for t in only["inputs"]} & produced - graph_inputs
    fully = (
        len(delegates) == 1
        and not fed_from_inside
        and graph_outputs <= {int(t) for t in only["outputs"]}
    )
    return len(delegates), fully


class LiteRtAdapter(RuntimeAdapter):
    name = "litert"
    # The interpreter module this device has, which the runner times as the runtime's
    # import: ai_edge_litert's where it is installed (Python 3.10+), tflite_runtime's on
    # older images (JetPack 5, older Raspberry Pi OS). The interpreter module itself, not
    # the package: ai_edge_litert's __init__ takes 8 ms, its interpreter ~290 ms.
    import_candidates = MODULES
    options = RuntimeOptions.taken_by("litert", "threads")

    def version(self) -> Optional[str]:
        if not self.available():
            return None
        for package in ("ai_edge_litert", "tflite_runtime"):
            if importlib.util.find_spec(package) is not None:
                version = getattr(importlib.import_module(package), "__version__", None)
                return version if package == MODULES[0].split(".")[0] else f"{package} {version}"
        return None

    def devices(self) -> List[str]:
        if not self.available():
            return []
        found = ["CPU"]
        if _library_present(EDGETPU_LIBRARY):
            found.append("EdgeTPU")
        if ctypes.util.find_library("tensorflowlite_gpu_delegate") or _library_present(GPU_LIBRARY):
            found.append("GPU")
        return found

    def formats(self, device: str) -> List[str]:
        """The Edge TPU runs only models edgetpu_compiler compiled for it."""
        return ["tflite-edgetpu"] if device == "EdgeTPU" else ["tflite"]

    def precisions(self, device: str) -> List[str]:
        """The Edge TPU runs int8 only; the GPU delegate float; the CPU all three."""
        return {"EdgeTPU": ["int8"], "GPU": ["fp32", "fp16"]}.get(device, ["fp32", "fp16", "int8"])

    def load(self, path: str, options: Optional[Dict[str, Any]] = None) -> LoadedLiteRtModel:
        module = importlib.import_module(self.import_name)
        options = options or {}
        device = options.get("device", "CPU")
        if device not in ("CPU", "EdgeTPU", "GPU"):
            raise ValueError(f"LiteRT has no device {device!r} (devices: CPU, EdgeTPU, GPU)")
        model_bytes = Path(path).read_bytes()
        delegates, delegate_name = [], None
        if device == "EdgeTPU":
            if not is_edgetpu_compiled(model_bytes):
                raise ValueError(
                    "this .tflite model is not compiled for the Edge TPU (no edgetpu-custom-op):"
                    " compile it with edgetpu_compiler, or run it on the CPU"
                )
            delegates.append(_load_delegate(module, EDGETPU_LIBRARY, "the Edge TPU runtime"))
            delegate_name = "EdgeTPU"
        elif device == "GPU":
            delegates.append(_load_delegate(module, GPU_LIBRARY, "the LiteRT GPU delegate"))
            delegate_name = "GPU"
        kwargs: Dict[str, Any] = {"model_content": model_bytes}
        if delegates:
            kwargs["experimental_delegates"] = delegates
        threads = options.get("threads")
        if threads:
            kwargs["num_threads"] = int(threads)
        interpreter = module.Interpreter(**kwargs)
        interpreter.allocate_tensors()
        loaded = LoadedLiteRtModel(interpreter, device, delegate_name)
        loaded.threads = kwargs.get("num_threads")
        loaded.prepare(options.get("trial_shapes") or {})  # static tensors: sized at load
        return loaded


def _load_delegate(module: Any, library: str, what: str) -> Any:
    try:
        return module.load_delegate(library)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load {what} ({library}): {exc}") from None
