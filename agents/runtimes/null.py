"""A runtime that runs nothing: each call spins for a fixed cost and returns zeros.

For testing the harness (runner, scenarios, statistics, energy windows) without any
runtime installed, against a latency known in advance, as MLCommons' harness has a null
backend. Offered only where EDGEBENCH_NULL_RUNTIME is set (agents.runtimes.TEST_RUNTIMES).
Each call costs EDGEBENCH_NULL_COST_US microseconds (default 200), read in the runner's
process, so a test sets it for the agent it starts.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, List, Optional

from agents.runtimes.seam import LoadedModel, Placement, Port, RuntimeAdapter

DEFAULT_COST_US = 200.0


def cost_us() -> float:
    """Microseconds each call spins (EDGEBENCH_NULL_COST_US, default 200)."""
    return float(os.environ.get("EDGEBENCH_NULL_COST_US") or DEFAULT_COST_US)


def _spin(ns: int) -> None:
    """Busy-wait `ns` nanoseconds: a sleep would hand the CPU away and wake late."""
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


class LoadedNullModel(LoadedModel):
    def __init__(self, registered: Dict[str, List[Optional[int]]], cost_ns: int) -> None:
        self._registered = registered
        self._cost_ns = cost_ns
        self.applied: Dict[str, Any] = {"cost_us": cost_ns / 1e3}

    def inputs(self) -> List[Port]:
        return [
            {"name": name, "shape": list(shape), "dtype": "float32"}
            for name, shape in self._registered.items()
        ]

    def run(self, feed: Dict[str, Any]) -> List[Any]:
        import numpy as np

        _spin(self._cost_ns)
        rows = next(iter(feed.values())).shape[0] if feed else 1
        return [np.zeros((rows, 1), dtype=np.float32)]

    def bind(self, feed: Dict[str, Any]) -> Callable[[], Any]:
        cost_ns = self._cost_ns

        def run_bound() -> None:
            _spin(cost_ns)

        run_bound.outputs = lambda: self.run(feed)  # type: ignore[attr-defined]
        return run_bound

    def placement(self) -> Placement:
        return Placement(requested_device="CPU", actual_device="CPU", fallback=False)

    def close(self) -> None:
        return None


class NullAdapter(RuntimeAdapter):
    name = "null"
    import_candidates = ("time",)  # nothing to import: a module every Python has

    def version(self) -> Optional[str]:
        return "0"

    def devices(self) -> List[str]:
        return ["CPU"]

    def formats(self, device: str) -> List[str]:
        return ["onnx"]  # read by nothing: any file will do

    def precisions(self, device: str) -> List[str]:
        return ["fp32"]

    def load(self, path: str, options: Optional[Dict[str, Any]] = None) -> LoadedNullModel:
        options = options or {}
        if not os.path.exists(path):
            raise ValueError(f"no model file at {path}")
        return LoadedNullModel(options.get("input_shapes") or {}, int(cost_us() * 1e3))
