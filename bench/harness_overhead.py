"""Harness overhead per query: edgebench's timing loop against a bare loop, same process.

For each workload, runs (a) a bare `for` loop calling the runtime and timing only the whole
loop, and (b) edgebench's `time_runs` loop (two perf_counter_ns reads, an append and the
stopping rule per query) for the same number of queries, alternating a and b several times.
Overhead per query = (total_b - total_a) / n; the target is <= 2 us (MLPerf LoadGen's C++
harness costs about 2.4 us per query). Prints medians over the rounds.

Usage: .venv/bin/python bench/harness_overhead.py
"""

from __future__ import annotations

import statistics as stdlib_statistics
import time

import numpy as np
import onnxruntime

from agents.measurement import timing
from orchestrator.artifacts.builtin_models import mlp, small_cnn

ROUNDS = 7


def bare_loop_ns(run, n: int) -> int:  # noqa: ANN001
    start = time.perf_counter_ns()
    for _ in range(n):
        run()
    return time.perf_counter_ns() - start


def harness_loop_ns(run, n: int) -> int:  # noqa: ANN001
    rule = timing.StoppingRule(0, n, 0, 3600, n)
    start = time.perf_counter_ns()
    timing.time_runs(run, rule)
    return time.perf_counter_ns() - start


def measure(label: str, run, n: int) -> None:  # noqa: ANN001
    timing.warm_up(run, 0.5)
    overheads, per_query = [], []
    for _ in range(ROUNDS):
        bare = bare_loop_ns(run, n)
        harness = harness_loop_ns(run, n)
        overheads.append((harness - bare) / n)
        per_query.append(bare / n)
    overhead = stdlib_statistics.median(overheads)
    query = stdlib_statistics.median(per_query)
    print(
        f"{label:<30} n={n:>6}  bare {query / 1e3:9.2f} us/query  "
        f"harness overhead {overhead / 1e3:+7.3f} us/query ({overhead / query:+.2%})"
    )


def main() -> None:
    measure("no-op", lambda: None, 200_000)
    for built, shape, n in ((mlp(), (1, 64), 50_000), (small_cnn(), (1, 3, 96, 96), 5_000)):
        session = onnxruntime.InferenceSession(built.onnx_bytes, providers=["CPUExecutionProvider"])
        feed = {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        measure(f"onnxruntime {built.name} b1", lambda s=session, f=feed: s.run(None, f), n)


if __name__ == "__main__":
    main()
