"""Do edgebench's verdicts have the error rate they claim?

Pairs of configurations are measured the way a campaign measures them: R runs each, every
run a fresh `python -m agents.runner` process with its own warm-up (the code a device
runs), the runs of A and B interleaved (A B A B ...). Each pair gets the verdict
`edgebench results compare` gives (orchestrator.across_runs.compare_runs, over run medians).

* Identical pairs: A and B are the same configuration (several models, onnxruntime and
  OpenVINO). Every "real difference" called is a false positive; the rate should be at
  most alpha (0.05).
* Known differences: A is an MLP of K layers, B the same with one more layer (K+1), both
  built here with seeded weights (width 256, batch 8, one thread; all weights stay in cache). The size of the difference is measured separately (many
  more runs of each, interleaved) and printed; the verdict should find it (B slower) in at
  least 80 % of pairs.

Usage: .venv/bin/python bench/ab_calibration.py [--runs 5] [--identical 24] [--different 12]
       [--seconds 0.6]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.contract import ArtifactRef, InputSpec, MeasurementPolicy, RuntimeOptions, TrialSpec
from orchestrator.across_runs import ALPHA, compare_runs

WIDTH = 256
BATCH = 8
# One thread: a 2-core machine shared with other work makes a two-thread run mostly noise.
OPTIONS = RuntimeOptions(threads=1)


def mlp_onnx(layers: int, path: Path, width: int = WIDTH) -> Path:
    """A chain of `layers` MatMul+Relu of width x width, seeded weights, dynamic batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(layers * 1000 + width)
    nodes, inits, previous = [], [], "input"
    for i in range(layers):
        weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"r{i}"]))
        previous = f"r{i}"
    nodes.append(helper.make_node("Identity", [previous], ["output"]))
    graph = helper.make_graph(
        nodes,
        f"mlp{layers}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def run_once(model: Path, runtime: str, seconds: float, workdir: Path) -> float:
    """One run in a fresh process; returns its p50 in ms."""
    data = model.read_bytes()
    spec = TrialSpec(
        trial_id="0" * 32, attempt=1, boot_id="bench", campaign_id=0, device="bench",
        model=model.stem,
        artifact=ArtifactRef(sha256=hashlib.sha256(data).hexdigest(), size=len(data), format="onnx", uri=str(model)),
        inputs=[InputSpec(name="input", shape=[None, WIDTH], dtype="float32")],
        runtime=runtime, batch_size=BATCH, runtime_options=OPTIONS,
        policy=MeasurementPolicy(warmup_s=0.2, min_queries=100, min_s=seconds, max_s=seconds * 4,
                                 idle_baseline_s=0),
        timeout_s=120,
    )  # fmt: skip
    spec_path, result_path = workdir / "spec.json", workdir / "result.json"
    spec_path.write_text(spec.model_dump_json())
    subprocess.run(
        [sys.executable, "-m", "agents.runner", str(spec_path), str(result_path)],
        check=True,
        timeout=180,
    )
    result = json.loads(result_path.read_text())
    if result["status"] != "ok":
        raise SystemExit(f"run failed: {result['error']}")
    return result["summary"]["p50_ms"]


def measure_pair(a: tuple, b: tuple, runs: int, seconds: float, workdir: Path) -> tuple:
    """R runs of A and of B, interleaved; their run medians."""
    medians_a, medians_b = [], []
    for _ in range(runs):
        medians_a.append(run_once(*a, seconds, workdir))
        medians_b.append(run_once(*b, seconds, workdir))
    return medians_a, medians_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--identical", type=int, default=24)
    parser.add_argument("--different", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=0.6)
    parser.add_argument("--layers", type=int, default=10, help="K in K vs K+1 layers")
    parser.add_argument("--size-runs", type=int, default=15, help="runs to size the difference")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgebench-ab-") as tmp:
        work = Path(tmp)
        models = {
            k: mlp_onnx(k, work / f"mlp{k}.onnx") for k in (4, 8, args.layers, args.layers + 1)
        }
        configs = [(models[k], rt) for k in (4, 8) for rt in ("onnxruntime", "openvino")]
        print(f"identical pairs: {args.identical} over {len(configs)} configurations, "
              f"{args.runs} runs each side, {args.seconds} s per run")  # fmt: skip
        false_positives, spreads = 0, []
        for i in range(args.identical):
            config = configs[i % len(configs)]
            a, b = measure_pair(config, config, args.runs, args.seconds, work)
            verdict = compare_runs(a, b)
            false_positives += verdict.significant
            spreads.append(abs(verdict.change_pct))
            print(f"  {config[0].stem:6} {config[1]:11} change {verdict.change_pct:+6.1f} % "
                  f"p {verdict.p_value:.3g} {'DIFFERENT (false positive)' if verdict.significant else 'same'}")  # fmt: skip
        small, large = (
            (models[args.layers], "onnxruntime"),
            (models[args.layers + 1], "onnxruntime"),
        )
        sized_a, sized_b = measure_pair(small, large, args.size_runs, args.seconds, work)
        true_pct = (statistics.median(sized_b) / statistics.median(sized_a) - 1) * 100
        print(f"known difference: mlp{args.layers} vs mlp{args.layers + 1} on onnxruntime, "
              f"sized over {args.size_runs} interleaved runs each: {true_pct:+.1f} %")  # fmt: skip
        found = 0
        for _ in range(args.different):
            a, b = measure_pair(small, large, args.runs, args.seconds, work)
            verdict = compare_runs(a, b)
            hit = verdict.significant and verdict.change_pct > 0
            found += hit
            print(f"  change {verdict.change_pct:+6.1f} % p {verdict.p_value:.3g} "
                  f"{'found' if hit else 'MISSED'}")  # fmt: skip
    print()
    if args.identical:
        print(f"false-positive rate: {false_positives}/{args.identical} = "
              f"{false_positives / args.identical:.1%} (stated level {ALPHA:.0%}); median |change| "
              f"between identical configurations {statistics.median(spreads):.1f} %")  # fmt: skip
    print(f"true differences found: {found}/{args.different} = {found / args.different:.0%} "
          f"(target 80 %), true difference {true_pct:+.1f} %")  # fmt: skip
    print(f"took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
