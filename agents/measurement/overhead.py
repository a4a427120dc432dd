"""What the harness and the application's call add to a measured latency: the timing loop's
own cost, the runtime's own clock beside the call, and the call an application makes
(inputs passed, outputs returned) beside the bound operation a trial times."""

from __future__ import annotations

import time
from typing import Any, Dict

from agents.contract import statistics
from agents.measurement import timing


def harness_overhead_ns() -> int:
    """Median cost of one timing-loop iteration around nothing, on this device now."""
    rule = timing.StoppingRule(0, 2000, 0, 1.0, 2000)
    return int(statistics.percentile(sorted(timing.time_runs(lambda: None, rule)), 50))


INTERNAL_SAMPLES = 200


def internal_latency(model: Any, feed: Dict[str, Any]) -> Dict[str, Any]:
    """The runtime's own latency beside the latency of the call, over the same queries
    (`model`: a loaded model, agents.runtimes.seam.LoadedModel).

    The difference is what the Python call adds (binding, copies, the GIL): it explains
    why a runtime's own benchmark tool reports less than an application sees.
    """
    calls, internal = [], []
    for _ in range(INTERNAL_SAMPLES):
        t0 = time.perf_counter_ns()
        model.run(feed)
        calls.append(time.perf_counter_ns() - t0)
        internal.append(model.internal_latency_ms())
    call_p50 = statistics.percentile(sorted(calls), 50) / 1e6
    internal_p50 = statistics.percentile(sorted(internal), 50)
    return {
        "n": INTERNAL_SAMPLES,
        "call_p50_ms": call_p50,
        "internal_p50_ms": internal_p50,
        "call_overhead_ms": call_p50 - internal_p50,
    }


def application_call(model: Any, feed: Dict[str, Any]) -> Dict[str, Any]:
    """The latency of the call an application makes (inputs passed, outputs returned as
    arrays) beside the timed operation, over up to 200 queries or 1 s: the difference is
    what binding and copying cost per query in this runtime's Python API."""
    rule = timing.StoppingRule(0, 200, 0, 1.0, 200)
    samples = sorted(timing.time_runs(lambda: model.run(feed), rule))
    return {
        "what": "run(feed): inputs passed and outputs returned as arrays on every call",
        "n": len(samples),
        "p50_ms": statistics.percentile(samples, 50) / 1e6,
    }
