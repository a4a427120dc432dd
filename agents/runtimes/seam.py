"""The runtime seam: what a runtime adapter and the model it loads provide, declared once.

The runner calls only what is declared here. Hooks a runtime may lack have a documented
default in these base classes, so the runner never probes an adapter with `hasattr`, and
a new adapter that subclasses them is checked (an abstract method left out is an error
when it is created, not a surprise in the middle of a trial).

Runtime libraries are imported only inside the adapter, only when used: the agent lists
every runtime on a device that may have none of them.
"""

from __future__ import annotations

import importlib.util
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Type

from pydantic import BaseModel

from agents.contract import RuntimeOptions
from agents.contract.profile import OperatorProfile

# One input or output as a runtime describes it: name, shape (None where dynamic), dtype.
Port = Dict[str, Any]


class ProfileUnavailable(RuntimeError):
    """The runtime offers no operator profiler this adapter can use: said, not guessed."""


def profile_wall_ms(run_bound: Callable[[], Any], queries: int) -> float:
    """One query to warm a profiled model, then `queries` timed: their mean wall time, ms."""
    run_bound()
    started = time.perf_counter_ns()
    for _ in range(queries):
        run_bound()
    return (time.perf_counter_ns() - started) / 1e6 / queries


@dataclass
class Placement:
    """Where a loaded model runs, in one shape for every runtime."""

    requested_device: str  # the trial's device (CPU, GPU, an OpenVINO device, a delegate)
    actual_device: Optional[str]  # where it ran; None where the runtime cannot say
    fallback: Optional[bool]  # part or all of it ran elsewhere than requested; None: unknown
    options: Dict[str, Any] = field(default_factory=dict)  # what the runtime applied
    runtime_cache: bool = False  # loaded through the runtime's model cache
    # The runtime's own account: providers, execution devices, delegate partitions, target.
    detail: Dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        """What the result stores: the runtime's detail beside the common fields, one flat
        object (as results stored before this shape have it)."""
        return {
            **self.detail,
            "requested_device": self.requested_device,
            "actual_device": self.actual_device,
            "fallback": self.fallback,
            "options": self.options,
            "runtime_cache": self.runtime_cache,
        }


class LoadedModel(ABC):
    """A model loaded by a runtime, ready to be timed."""

    # The options the runtime applied (shown in the trial's placement).
    applied: Dict[str, Any]
    # Whether a second load reads a cache the first one filled (OpenVINO's CACHE_DIR, a
    # compiled TVM module): the runner then times a second, cached load beside the first.
    runtime_cache: bool = False
    # The part of the load spent compiling the model for its device at the trial's shapes
    # (OpenVINO's compile_model, TVM's build; a read of the compiled module where the load
    # found it in its cache), in ms; None where the runtime has no separate compile step.
    compile_ms: Optional[float] = None

    @abstractmethod
    def inputs(self) -> List[Port]:
        """The model's inputs as the runtime sees them."""

    @abstractmethod
    def run(self, feed: Dict[str, Any]) -> List[Any]:
        """The application's call: inputs passed, outputs returned as host arrays."""

    @abstractmethod
    def bind(self, feed: Dict[str, Any]) -> Callable[[], Any]:
        """The operation a trial times, the same work on every runtime: inputs bound once,
        each call runs the model and leaves its outputs in host memory (as the vendors'
        benchmark tools time it). The callable has an `outputs()` attribute that reads
        them (untimed)."""

    @abstractmethod
    def placement(self) -> Placement:
        """Where it ran (asked after the measured run, before fidelity)."""

    @abstractmethod
    def close(self) -> None:
        """Release the runtime's resources (the runner may load the model again)."""

    # -- optional hooks, with their defaults ---------------------------------------------

    def outputs(self) -> List[Port]:
        """The model's outputs as the runtime sees them; empty where it does not say
        (fidelity then compares the outputs in order, without names)."""
        return []

    def internal_latency_ms(self) -> Optional[float]:
        """The runtime's own measure of the last inference (what its vendor's tool
        reports), or None where the runtime keeps no such clock (the default)."""
        return None

    def profile(self, feed: Dict[str, Any], queries: int) -> OperatorProfile:
        """`queries` queries of `feed` under the runtime's own profiler, after the timed
        runs (a profiler perturbs what it watches): where each operator ran, how long it
        took, in what precision. Raises ProfileUnavailable where there is none (the
        default)."""
        raise ProfileUnavailable(f"{type(self).__name__} has no operator profiler")


class RuntimeAdapter(ABC):
    """A runtime: what it is, what it offers on this machine, and how it loads a model."""

    name: str
    # The modules that provide the runtime, in the order tried: the first one installed
    # is imported (and its import timed as the trial's cold start).
    import_candidates: Sequence[str] = ()
    # The RuntimeOptions it applies (RuntimeOptions.taken_by): reported at registration, so
    # a plan refuses an option the runtime would ignore, naming it; checked again at load.
    options: Type[BaseModel] = RuntimeOptions.taken_by("no")

    @property
    def import_name(self) -> str:
        """The module the runner imports (and times) before loading: the first of
        import_candidates that is installed, else the first one (whose import then fails
        with the runtime's own message)."""
        for module in self.import_candidates:
            if _installed(module):
                return module
        return self.import_candidates[0] if self.import_candidates else self.name

    def available(self) -> bool:
        """Whether the runtime is installed here (found without importing it)."""
        return any(_installed(module) for module in self.import_candidates)

    @abstractmethod
    def version(self) -> Optional[str]:
        """The runtime's version, None where it is not installed."""

    @abstractmethod
    def devices(self) -> List[str]:
        """The devices it can run on here (CPU, GPU, an execution provider's device)."""

    @abstractmethod
    def precisions(self, device: str) -> List[str]:
        """The precisions it computes in on `device` (fp32, fp16, bf16, int8)."""

    @abstractmethod
    def formats(self, device: str) -> List[str]:
        """The model file formats it loads on `device`, preferred first (onnx, openvino-ir,
        tflite, tflite-edgetpu). The agent reports them at registration: the controller
        plans from them and keeps no table of which runtime reads what."""

    @abstractmethod
    def load(self, path: str, options: Optional[Dict[str, Any]] = None) -> LoadedModel:
        """Load the model file for a trial, ready for its queries (timed as its load).
        `options`: device, precision, input_shapes (registered, the batch None),
        trial_shapes (every query's exact shapes: what runtimes with static tensors size
        themselves to, or compile for), cache_dir and the runtime options of the spec."""


def _installed(module: str) -> bool:
    """Whether `module`'s package is installed, found without importing anything (a dotted
    name's find_spec would import its parent package)."""
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):  # a broken install
        return False
