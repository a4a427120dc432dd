"""Seed a migrated test store through the real write path (repository, planning, ingest calls).

Test data only: `seed_store` is called by tests on stores they created; it never touches a
user's store. Latencies are deterministic, so tests can assert exact figures.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from sqlalchemy import select

from agents.contract import LatencySummary, Registration, TrialResult, TrialStarted
from agents.contract.statistics import summarize_ns, throughput
from orchestrator import planning
from orchestrator.campaigns.spec import parse_spec
from orchestrator.store import repository
from orchestrator.store.models import ModelCard, Trial
from orchestrator.store.session import session_factory

RUNTIME_VERSION = "1.18.0"

# name -> (device class, boot id, base latency in ns for batch 1 of the smallest model)
DEVICES = {
    "seed-pi4": ("raspberry-pi-4", "boot-seed-pi4", 9_000_000),
    "seed-x86": ("x86-64", "boot-seed-x86", 1_000_000),
}
# name -> (sha256, latency factor)
MODELS = {
    "seed_digits": ("a" * 64, 1),
    "seed_mobilenet": ("b" * 64, 5),
}
BATCH_SIZES = [1, 8]
CAMPAIGN_NAME = "seed-compare"
# The one trial the seeded agent reports as failed.
FAILED_TRIAL = ("seed-pi4", "seed_mobilenet", 8)
FAILED_ERROR = "seeded failure: onnxruntime could not allocate the input tensor"
SAMPLES_PER_TRIAL = 21


def samples_for(device: str, model: str, batch_size: int) -> list[int]:
    """Deterministic latency samples (ns): an arithmetic series around a per-trial base."""
    base = DEVICES[device][2] * MODELS[model][1] * (1 + (batch_size - 1) // 2)
    step = base // 100
    # Shuffled order (the agent records in run order); the statistics sort.
    return [base + step * ((i * 8) % SAMPLES_PER_TRIAL) for i in range(SAMPLES_PER_TRIAL)]


def _registration(name: str) -> Registration:
    device_class, boot_id, _ = DEVICES[name]
    return Registration(
        device=name,
        boot_id=boot_id,
        agent_version="0.1.0",
        tags=["seed"],
        facts={
            "device_class": device_class,
            "cpu_model": f"{device_class} test cpu",
            "arch": "aarch64" if "pi" in device_class else "x86_64",
            "logical_cores": 4,
            "memory_mb": 4096,
            "runtimes": [{"name": "onnxruntime", "version": RUNTIME_VERSION, "devices": ["CPU"]}],
        },
        sent_at=time.time(),
    )


def _register_devices(session) -> None:  # noqa: ANN001
    for name in DEVICES:
        repository.register_device(session, _registration(name))


def _submit(session, spec: dict[str, Any]) -> int:  # noqa: ANN001
    campaign, plan = planning.submit(session, parse_spec(spec))
    if plan.skipped:
        raise RuntimeError(f"seed campaign skipped combinations: {plan.skipped}")
    return campaign.id


Measure = Callable[[Trial], Optional[dict[str, Any]]]


def _report_every_trial(url: str, campaign_id: int, measure: Measure) -> list[dict[str, Any]]:
    """Dispatch, start and report each trial of the campaign through the repository, with
    the result fields `measure(trial)` returns (None: the trial failed with FAILED_ERROR)."""
    created: list[dict[str, Any]] = []
    with session_factory(url).begin() as session:
        trials = session.scalars(
            select(Trial).where(Trial.campaign_id == campaign_id).order_by(Trial.seq)
        ).all()
        for trial in trials:
            device, model, batch = trial.device.name, trial.model.name, trial.batch_size
            boot_id = DEVICES[device][1]
            repository.mark_dispatched(session, trial, boot_id)
            session.flush()
            started = repository.record_started(
                session,
                TrialStarted(
                    trial_id=trial.id,
                    attempt=trial.attempt,
                    device=device,
                    boot_id=boot_id,
                    sent_at=time.time(),
                ),
            )
            if started != "running":
                raise RuntimeError(f"seed: trial {trial.id} did not start: {started}")
            common = {
                "trial_id": trial.id,
                "attempt": trial.attempt,
                "device": device,
                "boot_id": boot_id,
                "runtime_version": RUNTIME_VERSION,
                "sent_at": time.time(),
            }
            fields = measure(trial)
            if fields is None:
                message = TrialResult(status="failed", error=FAILED_ERROR, **common)
                summary = None
            else:
                summary = summarize_ns(fields["samples_ns"])
                message = TrialResult(
                    status="ok", summary=LatencySummary(**summary), **fields, **common
                )
            outcome = repository.record_result(session, message)
            expected = "failed" if summary is None else "stored"
            if outcome != expected:
                raise RuntimeError(f"seed: result of trial {trial.id}: {outcome}")
            created.append(
                {
                    "trial_id": trial.id,
                    "device": device,
                    "model": model,
                    "precision": trial.precision,
                    "batch_size": batch,
                    "status": "failed" if summary is None else "done",
                    "p50_ms": summary["p50_ms"] if summary else None,
                    "p99_ms": summary["p99_ms"] if summary else None,
                    "summary": summary,
                    "fields": fields,
                }
            )
    return created


def _plain_measurement(trial: Trial) -> Optional[dict[str, Any]]:
    device, model, batch = trial.device.name, trial.model.name, trial.batch_size
    if (device, model, batch) == FAILED_TRIAL:
        return None
    samples = samples_for(device, model, batch)
    return {
        "actual_device": "CPU",
        "fallback": False,
        "placement": {"providers": ["CPUExecutionProvider"]},
        "throughput_ips": throughput(samples, batch),
        "load_ms": 12.5,
        "first_inference_ms": max(samples) / 1e6 * 2,
        "peak_rss_mb": 80.0,
        "model_bytes": 1024,
        "wall_s": 1.0,
        "samples_ns": samples,
    }


def seed_store(url: str) -> dict[str, Any]:
    """Register two devices and two models, submit a campaign over both devices and batch
    sizes 1 and 8, and report every trial (one as failed). Returns what was created:

    ``{"devices": [...], "models": [...], "campaign_id": int, "campaign_name": str,
    "trials": [{"trial_id", "device", "model", "batch_size", "status", "p50_ms", "p99_ms",
    "summary"}, ...]}``; ``p50_ms``/``p99_ms``/``summary`` are None for the failed trial.
    """
    with session_factory(url).begin() as session:
        _register_devices(session)
        for name, (sha256, _) in MODELS.items():
            _add_model(session, name, "fp32", sha256)
        campaign_id = _submit(
            session,
            {
                "name": CAMPAIGN_NAME,
                "devices": {"names": list(DEVICES)},
                "models": list(MODELS),
                "runtimes": ["onnxruntime"],
                "batch_sizes": BATCH_SIZES,
                "policy": {"warmup_s": 0, "min_queries": 1, "min_s": 0, "max_s": 1, "runs": 1},
            },
        )
    return {
        "devices": list(DEVICES),
        "models": list(MODELS),
        "campaign_id": campaign_id,
        "campaign_name": CAMPAIGN_NAME,
        "trials": _report_every_trial(url, campaign_id, _plain_measurement),
    }


def _add_model(session, name: str, precision: str, sha256: str) -> None:  # noqa: ANN001
    repository.upsert_model(
        session,
        name=name,
        fmt="onnx",
        precision=precision,
        sha256=sha256,
        size=1024,
        path=f"/nonexistent/seed/{sha256}.onnx",
        inputs=[{"name": "input", "shape": [None, 64], "dtype": "float32"}],
        recipe={"seed": True},
    )


# -- a second campaign for the trade-off and diff views: input-size variants of one model
# family in fp32 and int8, with accuracy, fidelity, memory, energy and conditions.

TRADEOFF_CAMPAIGN = "seed-tradeoffs"
FAMILY = "seed_net"
# variant -> (input size, latency factor, accuracy in fp32, accuracy in int8, fp32 RSS MB)
VARIANTS = {
    "seed_net_96": (96, 1, 0.72, 0.70, 60.0),
    "seed_net_224": (224, 4, 0.80, 0.79, 120.0),
}
PRECISIONS = ["fp32", "int8"]
INT8_SPEEDUP = 2
# Only the x86 device has an energy meter: the Pi's energy is null, never zero.
X86_WATTS = 15.0
# The Pi's fp32 run of the large variant heats up and is clocked down.
THROTTLED_TRIAL = ("seed-pi4", "seed_net_224", "fp32")


def tradeoff_expectation(device: str, variant: str, precision: str) -> dict[str, Any]:
    """The figures `seed_tradeoffs` reports for one trial (p50 exact: base × 1.1)."""
    size, factor, acc_fp32, acc_int8, rss = VARIANTS[variant]
    base_ns = DEVICES[device][2] * factor // (INT8_SPEEDUP if precision == "int8" else 1)
    p50_ms = base_ns * 1.1 / 1e6
    return {
        "input_size": size,
        "base_ns": base_ns,
        "p50_ms": p50_ms,
        "accuracy": acc_fp32 if precision == "fp32" else acc_int8,
        "peak_rss_mb": rss if precision == "fp32" else rss / 2,
        "energy_mj_per_inference": p50_ms * X86_WATTS if device == "seed-x86" else None,
        "throttled": (device, variant, precision) == THROTTLED_TRIAL,
    }


def _conditions(temperature_c: float, freq_khz: int) -> dict[str, Any]:
    return {
        "governors": {"0": "ondemand", "1": "ondemand"},
        "freq_khz": {"0": freq_khz, "1": freq_khz},
        "thermal_c": {"cpu-thermal": temperature_c},
        "loadavg": [0.1, 0.1, 0.1],
    }


HOT_TIMELINE = [
    {"t_s": 0.0, "hottest_c": 45.0, "freq_mhz": 1800.0},
    {"t_s": 1.0, "hottest_c": 70.0, "freq_mhz": 1200.0},
    {"t_s": 2.0, "hottest_c": 82.0, "freq_mhz": 600.0},
]


def _tradeoff_measurement(trial: Trial) -> dict[str, Any]:
    device, variant, precision = trial.device.name, trial.model.name, trial.precision
    expect = tradeoff_expectation(device, variant, precision)
    base, step = expect["base_ns"], expect["base_ns"] // 100
    samples = [base + step * ((i * 8) % SAMPLES_PER_TRIAL) for i in range(SAMPLES_PER_TRIAL)]
    hot = expect["throttled"]
    return {
        "actual_device": "CPU",
        "fallback": False,
        "placement": {"providers": ["CPUExecutionProvider"], "threads": 4},
        "throughput_ips": throughput(samples, trial.batch_size),
        "process_start_ms": 40.0,
        "import_ms": 150.0,
        "load_ms": 12.5 * VARIANTS[variant][1],
        "first_inference_ms": max(samples) / 1e6 * 2,
        "peak_rss_mb": expect["peak_rss_mb"],
        "model_bytes": 4096 * VARIANTS[variant][1],
        "wall_s": 1.0,
        "throttled": hot,
        "energy_meter": "rapl" if device == "seed-x86" else None,
        "energy_mj_per_inference": expect["energy_mj_per_inference"],
        "accuracy": expect["accuracy"],
        "accuracy_n": 1000,
        "fidelity_cosine": 1.0 if precision == "fp32" else 0.995,
        "samples_ns": samples,
        # the throttled trial's conditions read during the measurement, once a second
        "scenario_report": {"timeline": HOT_TIMELINE} if hot else {},
        "environment": {
            "python": "3.11.7",
            "numpy": "2.1.0",
            "conditions_before": _conditions(45.0, 1_800_000),
            "conditions_after": _conditions(82.0 if hot else 50.0, 600_000 if hot else 1_800_000),
        },
    }


def seed_tradeoffs(url: str) -> dict[str, Any]:
    """A campaign over both devices × the two input-size variants of FAMILY (each with a
    model card) × fp32 and int8, batch 1. Every trial succeeds; figures follow
    `tradeoff_expectation`. Returns what `seed_store` returns, for this campaign."""
    with session_factory(url).begin() as session:
        _register_devices(session)
        for index, (variant, (size, *_)) in enumerate(VARIANTS.items()):
            for precision in PRECISIONS:
                _add_model(session, variant, precision, f"{index}{precision}".ljust(64, "c"))
            session.add(
                ModelCard(
                    name=variant,
                    family=FAMILY,
                    input_size=size,
                    version="1",
                    task="image-classification",
                    source="tests/seed.py",
                    license="Apache-2.0",
                )
            )
        campaign_id = _submit(
            session,
            {
                "name": TRADEOFF_CAMPAIGN,
                "devices": {"names": list(DEVICES)},
                "models": list(VARIANTS),
                "runtimes": ["onnxruntime"],
                "precisions": PRECISIONS,
                "batch_sizes": [1],
                "policy": {"warmup_s": 0, "min_queries": 1, "min_s": 0, "max_s": 1, "runs": 1},
            },
        )
    return {
        "devices": list(DEVICES),
        "models": list(VARIANTS),
        "campaign_id": campaign_id,
        "campaign_name": TRADEOFF_CAMPAIGN,
        "trials": _report_every_trial(url, campaign_id, _tradeoff_measurement),
    }


# -- a third campaign for verdicts: configurations measured in several runs, whose run
# medians differ a little from run to run (as real runs do).

RUNS_CAMPAIGN = "seed-runs"
RUNS = 5
# run number -> factor on every sample of that run: run medians 0.98 .. 1.03 x the base.
RUN_FACTORS = {1: 1.00, 2: 1.03, 3: 0.98, 4: 1.01, 5: 0.99}


def _run_measurement(trial: Trial) -> dict[str, Any]:
    fields = _plain_measurement(trial)
    assert fields is not None
    factor = RUN_FACTORS[trial.repeat]
    fields["samples_ns"] = [int(s * factor) for s in fields["samples_ns"]]
    fields["throughput_ips"] = throughput(fields["samples_ns"], trial.batch_size)
    return fields


def seed_runs(url: str) -> dict[str, Any]:
    """seed_digits at batch 1 on both devices, RUNS runs each (interleaved, as planned).
    Run r's samples are `samples_for` x RUN_FACTORS[r]. Returns what `seed_store` returns."""
    with session_factory(url).begin() as session:
        _register_devices(session)
        _add_model(session, "seed_digits", "fp32", MODELS["seed_digits"][0])
        campaign_id = _submit(
            session,
            {
                "name": RUNS_CAMPAIGN,
                "devices": {"names": list(DEVICES)},
                "models": ["seed_digits"],
                "runtimes": ["onnxruntime"],
                "batch_sizes": [1],
                "policy": {"warmup_s": 0, "min_queries": 1, "min_s": 0, "max_s": 1, "runs": RUNS},
            },
        )
    return {
        "devices": list(DEVICES),
        "models": ["seed_digits"],
        "campaign_id": campaign_id,
        "campaign_name": RUNS_CAMPAIGN,
        "trials": _report_every_trial(url, campaign_id, _run_measurement),
    }
