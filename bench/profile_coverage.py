"""Do the operator profiles account for the measured time, and do they explain int8 vs fp32?

digits_cnn and mobilenet_v2_96 from the standard set (built here, seeded), fp32 and int8,
on onnxruntime and OpenVINO (the ONNX files) and LiteRT (the TFLite files), batch 1 on the
CPU: each an edgebench trial in a fresh `python -m agents.runner` process, as an agent runs
it, with `policy.profile` on. For each trial: the measured mean per query, the profile's
operator time per query and their ratio (target: within 15 %, or the runtime's own account
of the gap), the profile pass's wall time per query and its ratio to the measured mean (the
profiler's own cost), the top op types. Then, per model and
runtime, what the int8 − fp32 difference is made of (orchestrator.profile_diff.explain).

Usage: .venv/bin/python bench/profile_coverage.py [--seconds 3] [--models digits_cnn,...]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

from vendor_agreement import run_in_fresh_process  # bench/ is on sys.path when run as a script

from agents.contract import ArtifactRef, InputSpec, MeasurementPolicy, TrialSpec
from agents.contract.profile import OperatorProfile, by_op_type
from orchestrator.artifacts import standard_set, validation
from orchestrator.store.queries import profile_diff

RUNTIMES = {"onnx": ("onnxruntime", "openvino"), "tflite": ("litert",)}


def trial(name: str, path: Path, fmt: str, runtime: str, precision: str, seconds: float) -> dict:
    data = path.read_bytes()
    spec = TrialSpec(
        trial_id="0" * 32, attempt=1, boot_id="bench", campaign_id=0, device="bench",
        model=name,
        artifact=ArtifactRef(sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                             format=fmt, uri=str(path)),
        inputs=[InputSpec.of(i) for i in validation.describe(data, fmt)], runtime=runtime,
        batch_size=1, precision=precision,
        policy=MeasurementPolicy(warmup_s=0.5, min_queries=100, min_s=seconds, max_s=seconds,
                                 idle_baseline_s=0, profile=True),
        timeout_s=seconds + 180,
    )  # fmt: skip
    return run_in_fresh_process(spec)


def as_stored(result: dict) -> dict:
    """The figures `results profile` reads from the store, from a runner's result."""
    profile = OperatorProfile.model_validate(result["profile"])
    return {
        "op_types": by_op_type(profile), "total_ms": profile.total_ms(),
        "measured_mean_ms": result["summary"]["mean_ms"], "note": profile.note,
        "wall_ms": profile.wall_ms, "method": profile.method, "ops": len(profile.ops),
        "fallback_ops": sum(op.fallback for op in profile.ops),
    }  # fmt: skip


def line(model: str, runtime: str, precision: str, shown: dict) -> str:
    share = profile_diff.coverage(shown)
    top = ", ".join(
        f"{r['op_type']} {r['share']:.0%}" for r in shown["op_types"][:3] if r["share"] is not None
    )
    total = "—" if shown["total_ms"] is None else f"{shown['total_ms']:.4f}"
    slowdown = profile_diff.profiler_slowdown(shown)
    return (
        f"{model:<16} {runtime:<12} {precision:<5} {shown['measured_mean_ms']:9.4f} "
        f"{total:>9} {'—' if share is None else f'{share:.0%}':>6} {shown['wall_ms']:9.4f} "
        f"{slowdown:9.2f} {shown['ops']:>4} {shown['fallback_ops']:>3}  "
        f"{top or shown['note'][:60]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window per trial")
    parser.add_argument("--models", default="digits_cnn,mobilenet_v2_96")
    args = parser.parse_args()
    profiles: dict = {}
    print(f"{'model':<16} {'runtime':<12} {'prec':<5} {'mean ms':>9} {'ops ms':>9} "
          f"{'ops/mean':>6} {'pass ms':>9} {'pass/mean':>9} {'ops':>4} {'off':>3}  "
          "top op types")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="edgebench-profile-bench-") as tmp:
        for model in args.models.split(","):
            for artifact in standard_set.build(model).artifacts:
                if artifact.precision not in ("fp32", "int8") or artifact.format not in RUNTIMES:
                    continue
                path = Path(tmp) / f"{model}_{artifact.precision}.{artifact.format}"
                path.write_bytes(artifact.data)
                for runtime in RUNTIMES[artifact.format]:
                    result = trial(model, path, artifact.format, runtime, artifact.precision,
                                   args.seconds)  # fmt: skip
                    shown = as_stored(result)
                    profiles[(model, runtime, artifact.precision)] = shown
                    print(line(model, runtime, artifact.precision, shown), flush=True)
    print("\nint8 (B) against fp32 (A), per model and runtime:")
    for (model, runtime, precision), fp32 in profiles.items():
        int8 = profiles.get((model, runtime, "int8"))
        if precision == "fp32" and int8 is not None:
            print(f"  {model} on {runtime}: {profile_diff.explain(fp32, int8)}")


if __name__ == "__main__":
    main()
