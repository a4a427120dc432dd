"""How long until a configuration's median is known to +-1 %, across runs?

One run's samples pin its own median tightly (its 95 % interval was under +-1 % after
0.02-0.2 s of measuring), but runs of the same configuration differ by more than that, so
that figure said nothing about the next run. This measures R runs of one configuration,
each a fresh `python -m agents.runner` process (the code a device runs), and after every
run prints the across-runs interval of the median (orchestrator.across_runs.median_interval:
distribution-free, at least 95 % coverage from 6 runs on; with 2-5 runs the range, with its
smaller coverage) and the time spent so far: measuring only, and wall time with process
start, import, load and warm-up. Compare with benchmark_app's default of 60 s on CPU.

Usage: .venv/bin/python bench/run_interval.py [--runs 20] [--seconds 1] [--layers 8]
       [--runtime onnxruntime]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ab_calibration import mlp_onnx, run_once  # noqa: E402

from orchestrator.across_runs import median_interval  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--runtime", default="onnxruntime")
    args = parser.parse_args()
    medians: list[float] = []
    first_within = None
    with tempfile.TemporaryDirectory(prefix="edgebench-interval-") as tmp:
        work = Path(tmp)
        model = mlp_onnx(args.layers, work / f"mlp{args.layers}.onnx")
        started = time.monotonic()
        print(f"mlp{args.layers} on {args.runtime}, {args.seconds} s of measuring per run")
        print("runs  median ms  interval (coverage)          half-width  measuring  wall")
        for run in range(1, args.runs + 1):
            medians.append(run_once(model, args.runtime, args.seconds, work))
            interval = median_interval(medians)
            if interval is None:
                continue
            centre = statistics.median(medians)
            half = max(centre - interval["low"], interval["high"] - centre) / centre * 100
            measuring = run * args.seconds
            wall = time.monotonic() - started
            print(
                f"{run:4}  {centre:9.4f}  {interval['low']:.4f}-{interval['high']:.4f} "
                f"({interval['coverage'] * 100:4.1f} %)  +-{half:5.2f} %  {measuring:7.1f} s  "
                f"{wall:5.1f} s"
            )
            if first_within is None and half <= 1.0 and interval["coverage"] >= 0.95:
                first_within = (run, measuring, wall)
    if first_within:
        run, measuring, wall = first_within
        print(
            f"median within +-1 % (>= 95 % interval across runs) after {run} runs: "
            f"{measuring:.1f} s of measuring, {wall:.1f} s wall (benchmark_app default: 60 s)"
        )
    else:
        print(f"median not within +-1 % (>= 95 %) after {args.runs} runs")
    spread = statistics.stdev(medians) / statistics.mean(medians)
    print(f"between-run CV of the median over {len(medians)} runs: {spread:.3f}")


if __name__ == "__main__":
    main()
