"""Seed a migrated test store through the real write path (repository, planning, ingest calls).

Test data only: `seed_store` is called by tests on stores they created; it never touches a
user's store. Latencies are deterministic, so tests can assert exact figures.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from agents.contract import LatencySummary, Registration, TrialResult, TrialStarted
from agents.contract.statistics import summarize_ns, throughput
from orchestrator import planning
from orchestrator.campaigns.spec import parse_spec
from orchestrator.store import repository
from orchestrator.store.models import Trial
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


def seed_store(url: str) -> dict[str, Any]:
    """Register two devices and two models, submit a campaign over both devices and batch
    sizes 1 and 8, and report every trial (one as failed). Returns what was created:

    ``{"devices": [...], "models": [...], "campaign_id": int, "campaign_name": str,
    "trials": [{"trial_id", "device", "model", "batch_size", "status", "p50_ms", "p99_ms",
    "summary"}, ...]}``; ``p50_ms``/``p99_ms``/``summary`` are None for the failed trial.
    """
    sessions = session_factory(url)
    with sessions.begin() as session:
        for name in DEVICES:
            repository.register_device(session, _registration(name))
        for name, (sha256, _) in MODELS.items():
            repository.upsert_model(
                session,
                name=name,
                fmt="onnx",
                precision="fp32",
                sha256=sha256,
                size=1024,
                path=f"/nonexistent/seed/{sha256}.onnx",
                inputs=[{"name": "input", "shape": [None, 64], "dtype": "float32"}],
                recipe={"seed": True},
            )
        spec = parse_spec(
            {
                "name": CAMPAIGN_NAME,
                "devices": {"names": list(DEVICES)},
                "models": list(MODELS),
                "runtimes": ["onnxruntime"],
                "batch_sizes": BATCH_SIZES,
                "policy": {"warmup_s": 0, "min_queries": 1, "min_s": 0, "max_s": 1},
            }
        )
        campaign, plan = planning.submit(session, spec)
        campaign_id = campaign.id
        if plan.skipped:
            raise RuntimeError(f"seed campaign skipped combinations: {plan.skipped}")

    created: list[dict[str, Any]] = []
    with sessions.begin() as session:
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
            if (device, model, batch) == FAILED_TRIAL:
                message = TrialResult(status="failed", error=FAILED_ERROR, **common)
                summary = None
            else:
                samples = samples_for(device, model, batch)
                summary = summarize_ns(samples)
                message = TrialResult(
                    status="ok",
                    actual_device="CPU",
                    fallback=False,
                    placement={"providers": ["CPUExecutionProvider"]},
                    summary=LatencySummary(**summary),
                    throughput_ips=throughput(samples, batch),
                    load_ms=12.5,
                    first_inference_ms=summary["max_ms"] * 2,
                    peak_rss_mb=80.0,
                    model_bytes=1024,
                    wall_s=1.0,
                    samples_ns=samples,
                    **common,
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
                    "batch_size": batch,
                    "status": "failed" if summary is None else "done",
                    "p50_ms": summary["p50_ms"] if summary else None,
                    "p99_ms": summary["p99_ms"] if summary else None,
                    "summary": summary,
                }
            )
    return {
        "devices": list(DEVICES),
        "models": list(MODELS),
        "campaign_id": campaign_id,
        "campaign_name": CAMPAIGN_NAME,
        "trials": created,
    }
