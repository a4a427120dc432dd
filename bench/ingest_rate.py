"""How fast does one controller worker ingest results into the store?

A scratch store (a new PostgreSQL database on --postgres-admin, dropped afterwards; or a
SQLite file) gets 50 enrolled devices and a campaign of 4 × --results trials of
`mlp_digits`, all marked sent, and a synthetic stream of signed trial results for them
(each with 200 latency samples, as a short trial has). Each result goes through what the
controller does with it: verification of the device's signature, the lease and replay
checks, the row locks, the result and its samples, the campaign's progress. A quarter of
the stream each, in one run (so the four are compared on the same machine at the same time):

1. one message at a time through `orchestrator.ingest.handle` (one transaction each);
2. in batches of --batch through `orchestrator.ingest.handle_batch`;
3. through the broker with one ingest loop: the stream is put on the control queue of a
   private redis-server (as agents send it, `send_task`), and the controller's ingest
   (`orchestrator.ingest_workers.serve`, as `edgebench server` runs it, without the
   scheduler thread) drains it in a child process; the rate is counted from the first
   result stored to the last;
4. the same with --loops ingest loops (the controller's default on PostgreSQL: 2).

Target (issue 18): at least 1,000 results/s into PostgreSQL through the broker, one
controller host.

Usage: .venv/bin/python bench/ingest_rate.py [--store postgresql|sqlite] [--results 5000]
       [--batch 200] [--loops 2]
"""

from __future__ import annotations

import argparse
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dashboard_queries import scratch_postgres  # bench/ is on sys.path when run as a script
from load_run import rss_mb
from sqlalchemy import func, select

from agents.contract import CONTROL_QUEUE, INGEST_TASK, LatencySummary, Registration, TrialResult
from agents.contract import envelope as unsigned_envelope
from agents.contract.signing import device_key, new_token, sign
from agents.contract.statistics import summarize_ns
from orchestrator import broker, ingest, ingest_workers, planning
from orchestrator.artifacts.registry import build_and_register
from orchestrator.campaigns.spec import parse_spec
from orchestrator.store import migrate, repository
from orchestrator.store.models import Result, Trial
from orchestrator.store.session import session_factory
from orchestrator.transport import control_app

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
        assert ingest.handle(sessions, signed) == "registered", name
    sent = []
    with sessions.begin() as session:
        build_and_register(session, workdir / "artifacts", ["mlp_digits"])
    while len(sent) < results:  # campaigns of up to 5,000 trials (100 repeats × 50 devices)
        repeats = min(100, -(-(results - len(sent)) // DEVICES))
        with sessions.begin() as session:
            spec = parse_spec(
                {"name": f"ingest-bench-{len(sent)}", "devices": {"names": names},
                 "models": ["mlp_digits"], "repeats": repeats}
            )  # fmt: skip
            campaign, _ = planning.submit(session, spec)
            trials = list(session.scalars(select(Trial).where(Trial.campaign_id == campaign.id)))
            for trial in trials[: results - len(sent)]:
                repository.mark_dispatched(session, trial, trial.device.boot_id)
                sent.append((trial.id, trial.attempt, trial.device.name))
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


def serve(broker_url: str, database_url: str, processes: str) -> None:
    """The controller's ingest loops alone (run in a child process by through_worker)."""
    stop = threading.Event()
    ingest_workers.stop_on_signals(stop)
    sessions = session_factory(database_url)
    ingest_workers.serve(sessions, broker_url, None, int(processes), threading.Event(), stop)


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its children (the ingest loops beyond the first), in MB."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    return (rss_mb(pid) or 0) + sum(tree_rss_mb(int(kid)) for kid in kids)


def through_worker(sessions, database_url: str, stream: list, workdir: Path, loops: int) -> tuple:
    """Queue the stream, start the worker, time it from the first result stored to the last."""
    redis = broker.start(workdir / "broker", record=False)
    worker = None
    try:
        app = control_app(redis.url)
        for raw in stream:
            app.send_task(INGEST_TASK, args=[raw], queue=CONTROL_QUEUE)

        def stored() -> int:
            with sessions() as session:
                return session.scalar(select(func.count()).select_from(Result))

        before = stored()
        worker = subprocess.Popen(
            [sys.executable, __file__, "--serve", redis.url, database_url, str(loops)],
            stderr=open(workdir / "worker.log", "w"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 600
        count = before
        while count == before:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker stored nothing; see {workdir / 'worker.log'}")
            time.sleep(0.02)
            count = stored()
        first, first_count, rss_first = time.perf_counter(), count, tree_rss_mb(worker.pid)
        while count < before + len(stream) and time.monotonic() < deadline:
            time.sleep(0.02)
            count = stored()
        elapsed = time.perf_counter() - first
        return (count - first_count) / elapsed, count - before, rss_first, tree_rss_mb(worker.pid)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--results", type=int, default=5000, help="per mode")
    parser.add_argument("--batch", type=int, default=ingest_workers.INGEST_BATCH)
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--loops", type=int, default=2, help="ingest loops of the last mode (PostgreSQL)"
    )
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(*args.serve)
    n = args.results
    with tempfile.TemporaryDirectory(prefix="edgebench-ingest-") as tmp:
        if args.store == "postgresql":
            url, drop = scratch_postgres(args.postgres_admin)
        else:
            url, drop = f"sqlite:///{Path(tmp) / 'store.db'}", lambda: None
        try:
            sessions, stream = prepare(url, 4 * n, Path(tmp))
            rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            started = time.perf_counter()
            outcomes = [ingest.handle(sessions, raw) for raw in stream[:n]]
            single_s = time.perf_counter() - started
            started = time.perf_counter()
            for at in range(n, 2 * n, args.batch):
                outcomes += ingest.handle_batch(sessions, stream[at : min(at + args.batch, 2 * n)])
            batched_s = time.perf_counter() - started
            rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            loops = [1, args.loops if args.store == "postgresql" else 1]
            brokered = [
                through_worker(sessions, url, stream[(2 + i) * n : (3 + i) * n], Path(tmp), count)
                for i, count in enumerate(loops)
            ]
            with sessions() as session:
                stored = session.scalar(select(func.count()).select_from(Result))
        finally:
            drop()
    kinds = {o: outcomes.count(o) for o in set(outcomes)}
    print(f"{args.store}: {n} signed results ({SAMPLES} samples each) per mode")
    print(f"  one at a time (handle)      : {n / single_s:5.0f} results/s ({single_s:.2f} s)")
    print(
        f"  batches of {args.batch:<4} (handle_batch): {n / batched_s:5.0f} results/s "
        f"({batched_s:.2f} s, {single_s / batched_s:.1f}x)"
    )
    for count, (rate, via_worker, rss_first, rss_last) in zip(loops, brokered):
        print(
            f"  through the broker, {count} loop(s): {rate:5.0f} results/s ({via_worker} stored; "
            f"RSS {rss_first or 0:.0f} MB at the first result, {rss_last or 0:.0f} MB at the last)"
        )
    print(
        f"  stored {stored} of {len(stream)}; outcomes of 1 and 2: {kinds}; this process's peak "
        f"RSS {rss_start:.0f} MB before 1, {rss_end:.0f} MB after 2"
    )


if __name__ == "__main__":
    main()
