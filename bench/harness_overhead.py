"""How much of a measured latency is the harness itself.

Times the measurement loop around a no-op (pure harness cost per sample) and around a
real onnxruntime session of the built-in mlp_digits model, in one run, and prints the
medians and their ratio.  Usage: .venv/bin/python bench/harness_overhead.py
"""

from __future__ import annotations

import statistics as stdlib_statistics

import numpy as np
import onnxruntime

from agents.contract import statistics
from agents.measurement import timing
from orchestrator.artifacts.builtin_models import mlp, small_cnn

RULE = timing.StoppingRule(warmup_s=0.5, min_queries=20_000, min_s=2.0, max_s=10.0)


def measure(label: str, run) -> float:  # noqa: ANN001
    timing.warm_up(run, RULE.warmup_s)
    samples = timing.time_runs(run, RULE)
    summary = statistics.summarize_ns(samples)
    print(
        f"{label:<28} n={summary['n']:>7}  p50={summary['p50_ms'] * 1e3:9.2f} us  p99={summary['p99_ms'] * 1e3:9.2f} us"
    )
    return summary["p50_ms"]


def main() -> None:
    repeats = []
    for _ in range(3):
        empty = measure("no-op (harness only)", lambda: None)
        row = {"empty": empty}
        for built, shape in ((mlp(), (1, 64)), (small_cnn(), (1, 3, 96, 96))):
            session = onnxruntime.InferenceSession(
                built.onnx_bytes, providers=["CPUExecutionProvider"]
            )
            feed = {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
            row[built.name] = measure(
                f"onnxruntime {built.name} b1", lambda s=session, f=feed: s.run(None, f)
            )
        repeats.append(row)
    print()
    for name in ("mlp_digits", "small_cnn_96"):
        share = stdlib_statistics.median(r["empty"] / r[name] for r in repeats)
        print(f"harness share of {name} p50 (median of 3 runs): {share:.2%}")


if __name__ == "__main__":
    main()
