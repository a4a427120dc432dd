"""How fast does one controller worker ingest results into the store?

A scratch store (a new PostgreSQL database on --postgres-admin, dropped afterwards; or a
SQLite file) gets 50 enrolled devices and a campaign of 5,000 trials of `mlp_digits`, all
marked sent. Then a synthetic stream of 5,000 signed trial results (each with 200 latency
samples, as a short trial has) goes through `orchestrator.ingest.handle`, the function the
controller's Celery worker calls for every message: verification of the device's
signature, the lease and replay checks, the row locks, the result and its samples, the
campaign's progress. One process, one message at a time: one controller worker.

Target (issue 8): at least 1,000 results/s into PostgreSQL.

Usage: .venv/bin/python bench/ingest_rate.py [--store postgresql|sqlite] [--results 5000]
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from dashboard_queries import scratch_postgres  # bench/ is on sys.path when run as a script
from sqlalchemy import func, select

from agents.contract import LatencySummary, Registration, TrialResult
from agents.contract import envelope as unsigned_envelope
from agents.contract.signing import device_key, new_token, sign
from agents.contract.statistics import summarize_ns
from orchestrator import ingest, planning
from orchestrator.artifacts.registry import build_and_register
from orchestrator.campaigns.spec import parse_spec
from orchestrator.store import migrate, repository
from orchestrator.store.models import Result, Trial
from orchestrator.store.session import session_factory

DEVICES = 50
SAMPLES = 200


def prepare(url: str, results: int, workdir: Path) -> tuple:
    """Devices enrolled, a campaign of `results` trials, every trial sent; the signed stream."""
    migrate.upgrade(url)
    sessions = session_factory(url)
    _, token_id, token_hash = new_token()
    with sessions.begin() as session:
        repository.add_token(session, token_id, token_hash, local=True)
    names = [f"bench-{i:02d}" for i in range(DEVICES)]
    for name in names:
        registration = Registration(
            device=name,
            boot_id=f"boot-{name}",
            agent_version="bench",
            facts={"runtimes": [{"name": "onnxruntime", "version": "x", "devices": ["CPU"]}]},
            sent_at=time.time(),
            enrollment_token=token_id,
        )
        signed = sign(unsigned_envelope(registration), device_key(token_hash, name))
        assert ingest.handle(sessions, signed) == f"registered {name}"
    repeats = -(-results // DEVICES)
    with sessions.begin() as session:
        build_and_register(session, workdir / "artifacts", ["mlp_digits"])
        spec = parse_spec(
            {"name": "ingest-bench", "devices": {"names": names}, "models": ["mlp_digits"],
             "repeats": repeats}
        )  # fmt: skip
        campaign, plan = planning.submit(session, spec)
        trials = list(session.scalars(select(Trial).where(Trial.campaign_id == campaign.id)))[
            :results
        ]
        for trial in trials:
            repository.mark_dispatched(session, trial, trial.device.boot_id)
        sent = [(t.id, t.attempt, t.device.name) for t in trials]
    rng = random.Random(1)
    stream = []
    for trial_id, attempt, device in sent:
        samples = [rng.randint(9_000, 30_000) for _ in range(SAMPLES)]
        message = TrialResult(
            trial_id=trial_id,
            attempt=attempt,
            device=device,
            boot_id=f"boot-{device}",
            status="ok",
            summary=LatencySummary(**summarize_ns(samples)),
            throughput_ips=1e5,
            samples_ns=samples,
            sent_at=time.time(),
        )
        stream.append(sign(unsigned_envelope(message), device_key(token_hash, device)))
    return sessions, stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--results", type=int, default=5000)
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgebench-ingest-") as tmp:
        if args.store == "postgresql":
            url, drop = scratch_postgres(args.postgres_admin)
        else:
            url, drop = f"sqlite:///{Path(tmp) / 'store.db'}", lambda: None
        try:
            sessions, stream = prepare(url, args.results, Path(tmp))
            rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            started = time.perf_counter()
            outcomes = [ingest.handle(sessions, raw) for raw in stream]
            elapsed = time.perf_counter() - started
            with sessions() as session:
                stored = session.scalar(select(func.count()).select_from(Result))
            rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        finally:
            drop()
    kinds = {o: outcomes.count(o) for o in set(outcomes)}
    print(
        f"{args.store}: {len(stream)} signed results ({SAMPLES} samples each) ingested in "
        f"{elapsed:.2f} s = {len(stream) / elapsed:.0f} results/s by one worker; "
        f"stored {stored}; outcomes {kinds}; peak RSS {rss_start:.0f} MB before, "
        f"{rss_end:.0f} MB after"
    )


if __name__ == "__main__":
    main()
