"""Runs one trial, in its own process: artifact -> runtime adapter -> timing loop -> result.

Usage: ``python -m agents.runner SPEC.json RESULT.json``. The agent starts a fresh
process for every trial so that one trial's memory, threads and caches never leak
into the next one's numbers, and so that a crash or hang is contained.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from agents import artifact_fetch, runtimes
from agents.contract import ArtifactRef, TrialSpec, options_refusal, statistics
from agents.contract.profile import OperatorProfile
from agents.hardware import conditions
from agents.measurement import (
    energy,
    feeds,
    fidelity,
    loadgen,
    memory,
    overhead,
    scenarios,
    timing,
)
from agents.runtimes import LoadedModel, Placement, RuntimeAdapter, profiling
from agents.settings import AgentSettings


class TrialError(Exception):
    """A trial that cannot be measured, with a reason a user can act on."""


def artifact_path(spec: TrialSpec) -> Path:
    """The local file of the trial's artifact, verified against its sha256."""
    return local_file(spec.artifact, spec.device)


def local_file(ref: ArtifactRef, device: str) -> Path:
    """A file the trial needs, verified against its sha256: a path on a shared filesystem,
    or a download from the controller's artifact server into the agent's cache."""
    settings = AgentSettings()
    try:
        return artifact_fetch.fetch(
            ref,
            settings.artifact_cache(device),
            settings.resolved_artifact_token(),
            settings.artifact_cache_bytes,
            settings.artifact_patience_s,
        )
    except artifact_fetch.ArtifactError as exc:
        raise TrialError(str(exc)) from None


def npz_data(ref: Optional[ArtifactRef], device: str, what: str) -> Optional[Dict[str, Any]]:
    """The arrays of a model's data file (reference outputs, sample inputs), or None."""
    if ref is None:
        return None
    import numpy as np

    path = local_file(ref, device)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise TrialError(f"{what} {ref.sha256[:12]} is unreadable: {exc}") from None


def measure_fidelity(
    model: LoadedModel, data: Dict[str, Any], batch_size: int, registered: List[Dict[str, Any]]
) -> Dict[str, Any]:
    """Run the reference inputs through the loaded model and compare with the fp32 outputs."""
    import numpy as np

    mismatch = fidelity.shape_mismatch(data, registered)
    if mismatch:
        raise ValueError(mismatch)
    declared = model.inputs()
    outputs_declared = model.outputs()
    if fidelity.is_per_input(data):
        outputs = model.run(fidelity.reference_feed(data, declared))
        return fidelity.compare_outputs(outputs, data, outputs_declared)
    if len(declared) != 1:
        raise ValueError(f"reference data covers single-input models; this one has {len(declared)}")
    node = registered[0] if registered else declared[0]
    batched = node.get("batch_axis", 0) == 0 and bool(node["shape"]) and node["shape"][0] is None
    inputs = data["inputs"]
    collected = []
    for part in fidelity.chunks(len(inputs), batch_size if batched else 1):
        feed = {declared[0]["name"]: fidelity.to_model_dtype(inputs[part], declared[0])}
        first = outputs_declared[0] if outputs_declared else None
        collected.append(fidelity.to_float(model.run(feed)[0], first))
    return fidelity.compare(np.concatenate(collected), data["outputs"], data.get("labels"))


def make_feed(
    registered: List[Dict[str, Any]],
    batch_size: int,
    seed: int = 0,
    sample: Optional[Dict[str, Any]] = None,
    declared: Optional[List[Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    """The trial's inputs (agents.measurement.feeds), a TrialError where they cannot be built."""
    try:
        return feeds.make_feed(registered, batch_size, seed, sample, declared)
    except feeds.FeedError as exc:
        raise TrialError(str(exc)) from None


def environment() -> Dict[str, Any]:
    env: Dict[str, Any] = {"python": platform.python_version(), "pid": os.getpid()}
    try:
        env["loadavg_before"] = list(os.getloadavg())
    except OSError:
        env["loadavg_before"] = None
    try:
        import numpy

        env["numpy"] = numpy.__version__
    except ImportError:
        env["numpy"] = None
    return env


def conditions_now(root: Path) -> Dict[str, Any]:
    """The hottest thermal zone and the mean current CPU clock: a timeline point."""
    clocks = [f for f in (conditions.current_freq_khz(root) or {}).values() if isinstance(f, int)]
    return {
        "hottest_c": conditions.hottest_c({"thermal_c": conditions.thermal_c(root)}),
        "freq_mhz": round(sum(clocks) / len(clocks) / 1000, 1) if clocks else None,
    }


def timed_load(
    runtime: RuntimeAdapter, path: Path, spec: TrialSpec, options: Dict[str, Any]
) -> Tuple[LoadedModel, int]:
    """(loaded model ready for the trial's input shapes, nanoseconds it took)."""
    t0 = time.perf_counter_ns()
    try:
        model = runtime.load(str(path), options)
    except Exception as exc:  # a runtime's own load error, reported as the trial's reason
        raise TrialError(f"{spec.runtime} could not load {spec.model}: {exc}") from None
    return model, time.perf_counter_ns() - t0


@dataclass
class Measured:
    """A trial's one run: its outcome and summary, the energy window it was measured in, and
    the conditions around it. A trial is one run; when it is unstable or throttled, the
    controller adds another run of its configuration (policy.max_reruns): none is replaced."""

    outcome: scenarios.ScenarioOutcome
    summary: Dict[str, Any]
    window_j: Optional[float]
    window_s: float  # the span window_j covers (the meter's own, else the measured time)
    before: Dict[str, Any]
    after: Dict[str, Any]
    marks: Dict[str, Any] = field(default_factory=dict)


def measure(
    spec: TrialSpec,
    run_once: Callable[[], object],
    meter: Optional[energy.EnergyMeter],
    idle_w: Optional[float],
    before: Dict[str, Any],
    root: Path,
) -> Measured:
    """The scenario's timed queries inside one energy window. A paced run is followed by its
    warm burst, in an energy window of its own."""
    policy = spec.policy
    rule = timing.StoppingRule(
        policy.warmup_s, policy.min_queries, policy.min_s, policy.max_s, policy.max_queries
    )
    # Wall-clock marks (not durations): they place the trial among other processes.
    marks: Dict[str, Any] = {"measure_start_unix": time.time()}
    if meter is not None:
        meter.start()
    try:
        outcome = scenarios.run(
            spec.scenario,
            run_once,
            rule,
            spec.scenario_params,
            probe_temperature=lambda: conditions_now(root)["hottest_c"],
            timeline=timing.Timeline(lambda: conditions_now(root)),
        )
    except loadgen.LoadGenUnavailable as exc:  # an mlperf scenario on a device without it
        raise TrialError(str(exc)) from None
    window_j = meter.stop() if meter is not None else None
    window_s = (meter.window_s if meter is not None else None) or outcome.measured_s
    marks["measure_end_unix"] = time.time()
    after = conditions.snapshot(root)
    summary = statistics.summarize_ns(outcome.samples_ns)
    if spec.scenario == "paced":
        outcome.report.update(paced_warm_figures(spec, run_once, outcome, meter, idle_w))
    return Measured(outcome, summary, window_j, window_s, before, after, marks)


def paced_warm_figures(
    spec: TrialSpec,
    run_once: Callable[[], object],
    outcome: scenarios.ScenarioOutcome,
    meter: Optional[energy.EnergyMeter],
    idle_w: Optional[float],
) -> Dict[str, Any]:
    """The warm burst after a paced run: its latency, and its energy per inference from its
    own window (so neither its time nor its joules land on the paced queries)."""
    if meter is not None:
        meter.start()
    started = time.perf_counter()
    warm = scenarios.warm_burst(run_once, spec.policy.max_s)
    warm_s = time.perf_counter() - started
    warm_j = meter.stop() if meter is not None else None
    figures = scenarios.paced_against_warm(outcome.samples_ns, warm)
    figures["warm_energy_mj_per_inference"] = (
        energy.energy_per_inference_mj(
            warm_j, meter.window_s or warm_s, idle_w, len(warm) * spec.batch_size
        )
        if warm_j is not None and meter is not None
        else None
    )
    return figures


def cooled_conditions(policy: Any, env: Dict[str, Any], root: Path) -> Dict[str, Any]:
    """The conditions before the trial, after waiting for the device to cool where the
    policy asks (recorded in env)."""
    before = conditions.snapshot(root)
    if policy.cool_below_c is not None:
        reached, hottest = conditions.wait_until_cool(
            policy.cool_below_c, policy.cool_timeout_s, root
        )
        env["cooled"] = {"target_c": policy.cool_below_c, "reached": reached, "hottest_c": hottest}
        before = conditions.snapshot(root)
    env["conditions_before"] = before
    return before


def installed_runtime(name: str) -> RuntimeAdapter:
    """The trial's runtime adapter, a TrialError where it is unknown or not installed."""
    try:
        runtime = runtimes.adapter(name)
    except runtimes.RuntimeUnavailable as exc:
        raise TrialError(str(exc)) from None
    if not runtime.available():
        raise TrialError(f"runtime {name} is not installed on this device")
    return runtime


def meter_and_idle_power(
    policy: Any, root: Path, energy_command: Optional[str]
) -> Tuple[Optional[energy.EnergyMeter], Optional[float]]:
    """The energy meter this device has (None without one) and its idle baseline (W)."""
    meter = energy.detect(root, command=energy_command)
    idle_w = None
    if meter is not None and policy.idle_baseline_s > 0:
        idle_w = energy.measure_idle_power(meter, policy.idle_baseline_s)
    return meter, idle_w


def load_options(
    spec: TrialSpec, registered: List[Dict[str, Any]], shapes: Dict[str, List[int]]
) -> Dict[str, Any]:
    """What runtime.load gets (agents.runtimes.seam.RuntimeAdapter.load)."""
    return {
        "device": spec.requested_device,
        "precision": spec.precision,
        **spec.runtime_options.model_dump(exclude_none=True, exclude={"cache"}),
        # registered shapes, the batch left dynamic: what runtimes that reshape need
        "input_shapes": {node["name"]: node["shape"] for node in registered},
        # the shapes every timed query has: what runtimes that compile for static shapes use
        "trial_shapes": shapes,
    }


@dataclass
class Loaded:
    """The model loaded for the trial, with its cold-start figures."""

    model: LoadedModel
    import_ns: int
    load_ns: int
    load_cached_ns: Optional[int]
    compile_ms: Optional[float]  # the first load's (LoadedModel.compile_ms)
    load_rss_delta_mb: Optional[float]
    cache_dir: Optional[str]


def load_model(
    runtime: RuntimeAdapter, path: Path, spec: TrialSpec, options: Dict[str, Any],
    env: Dict[str, Any],
) -> Loaded:  # fmt: skip
    """Import the runtime and load the model, each timed; with `cache`, load it a second
    time from the runtime cache the first load filled (an empty one, removed afterwards)."""
    t0 = time.perf_counter_ns()
    importlib.import_module(runtime.import_name)
    import_ns = time.perf_counter_ns() - t0
    cache_dir = None
    if spec.runtime_options.cache:  # an empty cache: the first load fills it, the second reads it
        cache_dir = tempfile.mkdtemp(prefix="edgebench-runtime-cache-")
        options["cache_dir"] = cache_dir
    rss_before = memory.current_rss_mb()
    model, load_ns = timed_load(runtime, path, spec, options)
    rss_after = memory.current_rss_mb()
    compile_ms, load_cached_ns = model.compile_ms, None
    if cache_dir is not None:
        if model.runtime_cache:
            model.close()
            model, load_cached_ns = timed_load(runtime, path, spec, options)
        else:
            env["runtime_cache"] = (
                f"{spec.runtime} on {spec.requested_device} keeps no model cache: loaded once"
            )
    delta = rss_after - rss_before if rss_after is not None and rss_before is not None else None
    return Loaded(model, import_ns, load_ns, load_cached_ns, compile_ms, delta, cache_dir)


@dataclass
class Timed:
    """What the loaded model gave: first inference, the measured run, placement, quality."""

    first_ns: int
    measured: Measured
    placement: Placement
    quality: Dict[str, Any]
    profile: Optional[OperatorProfile] = None


def time_model(
    spec: TrialSpec, model: LoadedModel, registered: List[Dict[str, Any]],
    sample: Optional[Dict[str, Any]],
    reference: Optional[Dict[str, Any]], meter: Optional[energy.EnergyMeter],
    idle_w: Optional[float], before: Dict[str, Any], root: Path, env: Dict[str, Any],
) -> Timed:  # fmt: skip
    """First inference, warm-up, the measured scenario, the application's call and the
    runtime's own clock beside it, placement, then fidelity against the reference."""
    feed = make_feed(registered, spec.batch_size, sample=sample, declared=model.inputs())
    t0 = time.perf_counter_ns()
    model.run(feed)
    first_ns = time.perf_counter_ns() - t0
    # Every runtime is timed doing the same work: inputs bound once, each query runs the
    # model and leaves its outputs in host memory (what the vendors' tools time).
    run_bound = model.bind(feed)
    env["timed_operation"] = "bound: inputs bound once, outputs left in host memory"
    timing.warm_up(run_bound, spec.policy.warmup_s)
    measured = measure(spec, run_bound, meter, idle_w, before, root)
    env.update(measured.marks)
    env["application_call"] = overhead.application_call(model, feed)
    if model.internal_latency_ms() is not None:  # the runtime keeps its own clock
        env["runtime_internal"] = overhead.internal_latency(model, feed)
    placement = model.placement()
    quality: Dict[str, Any] = {}
    if reference is not None:
        try:
            quality = measure_fidelity(model, reference, spec.batch_size, registered)
            if "fidelity_outputs" in quality:  # several outputs: each one's figures
                env["fidelity_outputs"] = quality.pop("fidelity_outputs")
        except ValueError as exc:  # measured latency stands; fidelity is absent, with why
            env["fidelity_error"] = str(exc)
    profile = None
    if spec.policy.profile:  # last: a profiler perturbs what it watches
        profile = profiling.profile_pass(model, feed, measured.summary.get("mean_ms"), env)
        placement = profiling.with_profile(placement, profile)
    return Timed(first_ns, measured, placement, quality, profile)


def run_trial(
    spec: TrialSpec,
    process_start_ms: Optional[float] = None,
    energy_command: Optional[str] = None,
    root: Path = Path("/"),
) -> Dict[str, Any]:
    """Measure the trial. Returns the result fields (status ok), or raises TrialError."""
    started = time.perf_counter()
    env = environment()
    env["runner_started_unix"] = time.time()  # a wall-clock mark, as measure_start_unix
    env["harness_overhead_ns"] = overhead.harness_overhead_ns()
    before = cooled_conditions(spec.policy, env, root)
    path = artifact_path(spec)
    reference = npz_data(spec.reference, spec.device, "reference data")
    sample = npz_data(spec.sample_input, spec.device, "sample input")
    registered = [node.model_dump() for node in spec.inputs]
    try:
        shapes = feeds.trial_shapes(registered, spec.batch_size)
    except feeds.FeedError as exc:
        raise TrialError(str(exc)) from None
    runtime = installed_runtime(spec.runtime)
    given = spec.runtime_options.model_dump(exclude_defaults=True)
    refusal = options_refusal(spec.runtime, given, runtime.options.model_fields)
    if refusal:  # a controller that planned it without the agent's word on its options
        raise TrialError(refusal)
    meter, idle_w = meter_and_idle_power(spec.policy, root, energy_command)
    options = load_options(spec, registered, shapes)
    loaded = load_model(runtime, path, spec, options, env)
    try:
        timed = time_model(
            spec, loaded.model, registered, sample, reference, meter, idle_w, before, root, env
        )
    finally:
        loaded.model.close()
        if loaded.cache_dir is not None:
            shutil.rmtree(loaded.cache_dir, ignore_errors=True)
    env["conditions_after"] = conditions.snapshot(root)
    fields = result_fields(spec, runtime, loaded, timed, meter, idle_w)
    fields.update(
        process_start_ms=process_start_ms,
        model_bytes=path.stat().st_size,
        wall_s=time.perf_counter() - started,
        environment=env,
    )
    return fields


def result_fields(
    spec: TrialSpec, runtime: RuntimeAdapter, loaded: Loaded, timed: Timed,
    meter: Optional[energy.EnergyMeter], idle_w: Optional[float],
) -> Dict[str, Any]:  # fmt: skip
    """The result's figures from the trial's steps (agents.contract.TrialResult)."""
    measured, placement = timed.measured, timed.placement
    outcome, summary = measured.outcome, measured.summary
    inferences = outcome.queries * spec.batch_size
    energy_mj = (
        energy.energy_per_inference_mj(measured.window_j, measured.window_s, idle_w, inferences)
        if measured.window_j is not None
        else None
    )
    load_cached_ns = loaded.load_cached_ns
    return {
        "status": "ok",
        "runtime_version": runtime.version(),
        "actual_device": placement.actual_device,
        "fallback": placement.fallback,
        "placement": placement.as_dict(),
        "summary": summary,
        "unstable": summary["robust_cv"] > spec.policy.max_cv,
        "throughput_ips": inferences / outcome.measured_s if outcome.measured_s > 0 else None,
        "import_ms": loaded.import_ns / 1e6,
        "load_ms": loaded.load_ns / 1e6,
        "load_cached_ms": load_cached_ns / 1e6 if load_cached_ns is not None else None,
        "compile_ms": loaded.compile_ms,
        "first_inference_ms": timed.first_ns / 1e6,
        "peak_rss_mb": memory.peak_rss_mb(),
        "load_rss_delta_mb": loaded.load_rss_delta_mb,
        "scenario_report": outcome.report,
        "throttled": conditions.throttled_during(measured.before, measured.after),
        "energy_meter": meter.name if meter is not None else None,
        "idle_power_w": idle_w,
        "energy_mj_per_inference": energy_mj,
        "samples_ns": outcome.samples_ns,
        "profile": timed.profile.model_dump() if timed.profile is not None else None,
        **timed.quality,
    }


def die_with_agent() -> None:
    """Linux: get SIGKILL when the agent dies, so no measurement outlives its agent."""
    agent_pid = os.environ.get("EDGEBENCH_AGENT_PID")
    if not agent_pid or not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != int(agent_pid):  # the agent died before prctl took effect
        os._exit(1)


def main(argv: List[str]) -> int:
    spawned = os.environ.get("EDGEBENCH_SPAWN_MONO_NS")
    # CLOCK_MONOTONIC is one clock for every process on the machine.
    process_start_ms = (time.monotonic_ns() - int(spawned)) / 1e6 if spawned else None
    die_with_agent()
    if len(argv) != 2:
        print("usage: python -m agents.runner SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = TrialSpec.model_validate_json(Path(argv[0]).read_text())
    try:
        outcome = run_trial(
            spec,
            process_start_ms,
            energy_command=os.environ.get("EDGEBENCH_ENERGY_COMMAND") or None,
        )
    except TrialError as exc:
        outcome = {"status": "failed", "error": str(exc)}
    except Exception as exc:  # anything else the runtime raised while measuring
        outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    Path(argv[1]).write_text(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
