"""Time every dashboard page's queries on a store of a million trials (target: < 1 s each).

    .venv/bin/python bench/dashboard_queries.py                     # SQLite, 1,000,000 trials
    .venv/bin/python bench/dashboard_queries.py --store postgresql  # a scratch PostgreSQL database

The store is always a scratch one this script creates: a SQLite file in a temporary folder,
or a new database `edgebench_bench_<random>` on the PostgreSQL server of --postgres-admin,
dropped at the end (kept with --keep, for EXPLAIN ANALYZE; --reuse URL times a kept one
again without seeding; drop it yourself afterwards). It never opens EDGEBENCH_DATABASE_URL
or a user's store. The rows are
synthetic (bulk-inserted, deterministic): 40 devices, 4 model families × 3 input sizes ×
fp32/int8, 3 runtimes, batch 1/8/32, campaigns of 2,000 trials, 5 % failed; every result
carries a conditions snapshot like a real one; 1,000 results keep 1,000 samples and one
keeps 100,000 (the most a trial stores).

Each page is timed as the sum of the queries the page runs, in the order it runs them,
with the arguments a first visit uses; the figure is the median (and the slowest) of
--repeat runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import sqlalchemy
from sqlalchemy import insert, select

from orchestrator.store import migrate, queries
from orchestrator.store.models import (
    Campaign,
    Device,
    Model,
    ModelCard,
    Result,
    ResultSamples,
    Trial,
)
from orchestrator.store.queries import dashboard as dq
from orchestrator.store.session import engine_for, session_factory

DEVICE_CLASSES = ["raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "x86-64", "coral-usb"]
FAMILIES = {"mobilenet_v2": 1.0, "resnet18": 3.0, "efficientnet_b0": 2.0, "yolo_nano": 4.0}
INPUT_SIZES = [96, 160, 224]
PRECISIONS = ["fp32", "int8"]
RUNTIMES = ["onnxruntime", "openvino", "litert"]
BATCH_SIZES = [1, 8, 32]
TRIALS_PER_CAMPAIGN = 2000
DEVICES = 40
CHUNK = 20_000


def _conditions(rng: random.Random) -> dict[str, Any]:
    cpus = [str(i) for i in range(4)]
    return {
        "governors": dict.fromkeys(cpus, "ondemand"),
        "freq_khz": {c: rng.choice([600_000, 1_500_000, 1_800_000]) for c in cpus},
        "freq_range_khz": dict.fromkeys(cpus, [600_000, 1_800_000]),
        "online_cpus": [0, 1, 2, 3],
        "thermal_c": {"cpu-thermal": round(rng.uniform(40, 85), 1)},
        "loadavg": [0.2, 0.3, 0.3],
    }


def seed(url: str, trials: int) -> dict[str, Any]:
    """Fill a migrated scratch store; returns the ids the timed queries use."""
    rng = random.Random(7)
    engine = engine_for(url)
    now = datetime.now(timezone.utc)
    with engine.begin() as connection:
        connection.execute(
            insert(Device),
            [
                {
                    "name": f"bench-{i:02d}",
                    "device_class": DEVICE_CLASSES[i % len(DEVICE_CLASSES)],
                    "tags": ["lab", f"rack{i % 4}"],
                    "facts": {"cpu_model": "bench cpu", "logical_cores": 4, "memory_mb": 4096},
                    "retired": False,
                    "registered_at": now,
                    "last_heartbeat_at": now,
                }
                for i in range(DEVICES)
            ],
        )
        models, cards = [], []
        for family in FAMILIES:
            for size in INPUT_SIZES:
                name = f"{family}_{size}"
                cards.append(
                    {
                        "name": name,
                        "family": family,
                        "input_size": size,
                        "version": "1",
                        "task": "image-classification",
                        "source": "bench",
                        "license": "Apache-2.0",
                        "preprocessing": {},
                        "inputs": [],
                        "data": {},
                        "recipe": {},
                        "created_at": now,
                    }
                )
                for precision in PRECISIONS:
                    models.append(
                        {
                            "name": name,
                            "format": "onnx",
                            "precision": precision,
                            "sha256": uuid.uuid4().hex * 2,
                            "size": 1000,
                            "path": "/nonexistent",
                            "inputs": [],
                            "recipe": {},
                            "created_at": now,
                        }
                    )
        connection.execute(insert(ModelCard), cards)
        connection.execute(insert(Model), models)
        campaigns = -(-trials // TRIALS_PER_CAMPAIGN)
        connection.execute(
            insert(Campaign),
            [
                {
                    "name": f"bench-{i}",
                    "spec": {},
                    "state": "done",
                    "skipped": [],
                    "created_at": now,
                    "finished_at": now,
                }
                for i in range(campaigns)
            ],
        )
        device_ids = list(connection.scalars(select(Device.id)))
        model_rows = connection.execute(select(Model.id, Model.name, Model.precision)).all()
        campaign_ids = list(connection.scalars(select(Campaign.id).order_by(Campaign.id)))

    env = {
        "python": "3.11.7",
        "numpy": "2.1.0",
        "harness_overhead_ns": 250,
        "conditions_before": _conditions(rng),
        "conditions_after": _conditions(rng),
    }
    result_id = 0
    started = time.monotonic()
    for chunk_start in range(0, trials, CHUNK):
        trial_rows, result_rows = [], []
        for i in range(chunk_start, min(chunk_start + CHUNK, trials)):
            model_id, name, precision = rng.choice(model_rows)
            device_id = rng.choice(device_ids)
            batch = rng.choice(BATCH_SIZES)
            failed = rng.random() < 0.05
            trial_id = f"{rng.getrandbits(128):032x}"
            finished = now - timedelta(seconds=trials - i)
            trial_rows.append(
                {
                    "id": trial_id,
                    "campaign_id": campaign_ids[i // TRIALS_PER_CAMPAIGN],
                    "device_id": device_id,
                    "model_id": model_id,
                    "runtime": rng.choice(RUNTIMES),
                    "requested_device": "CPU",
                    "precision": precision,
                    "batch_size": batch,
                    "scenario": "single_stream",
                    "seq": i % TRIALS_PER_CAMPAIGN,
                    "repeat": 1,
                    "policy": {},
                    "timeout_s": 60.0,
                    "state": "failed" if failed else "done",
                    "attempt": 1,
                    "error": "bench: out of memory" if failed else None,
                    "created_at": finished,
                    "finished_at": finished,
                }
            )
            if failed:
                continue
            result_id += 1
            family, size = name.rsplit("_", 1)
            p50 = (
                FAMILIES[family]
                * (int(size) / 96) ** 2
                * (0.5 if precision == "int8" else 1.0)
                * batch
                * (1 + device_id % 7)
                * rng.uniform(0.9, 1.1)
            )
            result_rows.append(
                {
                    "id": result_id,
                    "trial_id": trial_id,
                    "attempt": 1,
                    "boot_id": "bench",
                    "n": 1000,
                    "min_ms": p50 * 0.9,
                    "max_ms": p50 * 2,
                    "mean_ms": p50 * 1.05,
                    "stdev_ms": p50 * 0.05,
                    "cv": 0.05,
                    "p50_ms": p50,
                    "p90_ms": p50 * 1.2,
                    "p95_ms": p50 * 1.3,
                    "p99_ms": p50 * 1.5,
                    "throughput_ips": 1000.0 * batch / p50,
                    "process_start_ms": 40.0,
                    "import_ms": 150.0,
                    "load_ms": 20.0 * FAMILIES[family],
                    "first_inference_ms": p50 * 3,
                    "peak_rss_mb": 50.0 * FAMILIES[family],
                    "model_bytes": 1_000_000,
                    "runtime_version": "1.18.0",
                    "actual_device": "CPU",
                    "fallback": False,
                    "placement": {"providers": ["CPUExecutionProvider"]},
                    "environment": env,
                    "throttled": False,
                    "energy_mj_per_inference": p50 * 5 if device_id % 2 else None,
                    "accuracy": 0.7 + int(size) / 2000 - (0.01 if precision == "int8" else 0),
                    "fidelity_cosine": 1.0 if precision == "fp32" else 0.995,
                    "received_at": finished,
                }
            )
        with engine.begin() as connection:
            connection.execute(insert(Trial), trial_rows)
            connection.execute(insert(Result), result_rows)
        done = chunk_start + len(trial_rows)
        print(
            f"\r  seeded {done:,} trials ({time.monotonic() - started:.0f} s)", end="", flush=True
        )
    print()
    with engine.begin() as connection:
        connection.execute(
            insert(ResultSamples),
            [
                {
                    "result_id": r,
                    "samples_ns": [1_000_000 + (r * 7919 + k) % 50_000 for k in range(1000)],
                }
                for r in range(2, 1002)
            ],
        )
        connection.execute(
            insert(ResultSamples),
            [{"result_id": 1, "samples_ns": [1_000_000 + k % 97 * 1000 for k in range(100_000)]}],
        )
    # Planner statistics, and on PostgreSQL the visibility map that index-only scans need:
    # what autovacuum gives a live store after inserts. VACUUM runs outside a transaction;
    # SQLite's ANALYZE inside one (this engine begins its own, so "autocommit" never commits).
    if url.startswith("sqlite"):
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    return bench_ids(url)


def bench_ids(url: str) -> dict[str, Any]:
    """The ids seed() returned, read back from a kept scratch store."""
    with engine_for(url).connect() as connection:
        first = connection.execute(
            select(Trial.id, Trial.campaign_id, Trial.batch_size)
            .join(Result, Result.trial_id == Trial.id)
            .where(Result.id == 1)
        ).one()
        second = connection.scalar(select(Result.trial_id).where(Result.id == 2))
    return {
        "trial": first.id,
        "other_trial": second,
        "campaign": first.campaign_id,
        "batch": first.batch_size,
    }


def page_queries(session, ids: dict[str, Any]) -> dict[str, Callable[[], Any]]:  # noqa: ANN001
    """What each page runs on a first visit (the app's own store check included)."""
    variants = dq.model_variants(session)
    family = variants[0]["family"]
    one_size = variants[0]["model_ids"]
    whole_family = [i for v in variants if v["family"] == family for i in v["model_ids"]]
    campaign, trial, other = ids["campaign"], ids["trial"], ids["other_trial"]

    def fleet() -> None:
        queries.devices_overview(session, 15.0, include_retired=True)

    def campaigns() -> None:
        queries.campaigns_overview(session)
        queries.campaign_progress(session, campaign)
        dq.campaign_device_progress(session, campaign)
        dq.campaign_failures(session, campaign)
        queries.campaign_skipped(session, campaign)

    def compare() -> None:
        dq.model_variants(session)
        dq.result_filter_options(session, one_size)
        dq.result_groups(session, one_size, batch_size=1, sort="p50_ms")

    def tradeoffs() -> None:
        dq.model_variants(session)
        dq.result_filter_options(session, whole_family)
        dq.result_groups(session, whole_family, batch_size=1, by_model=True)

    def trial_detail() -> None:
        queries.campaigns_overview(session)
        dq.trial_detail(session, trial)
        dq.device_names(session)
        dq.trial_choices(session, campaign)
        dq.trial_detail(session, trial)
        queries.result_samples(session, trial)

    def diff() -> None:
        queries.campaigns_overview(session)
        dq.model_variants(session)
        dq.result_filter_options(session, one_size)
        devices = dq.devices_with_results(session, one_size)
        for device in devices[:2]:
            dq.newest_trial(session, device, one_size, batch_size=1, runtime="onnxruntime")
        dq.trial_detail(session, trial)
        dq.trial_detail(session, other)
        dq.significance(session, trial, other)

    return {
        "store check (every page)": lambda: dq.store_summary(session),
        "Fleet": fleet,
        "Campaigns": campaigns,
        "Compare": compare,
        "Trade-offs": tradeoffs,
        "Trial detail (100,000 samples)": trial_detail,
        "Diff (two devices, one model)": diff,
    }


def time_pages(url: str, ids: dict[str, Any], repeat: int) -> list[tuple[str, float, float]]:
    figures = []
    with session_factory(url)() as session:
        for page, run in page_queries(session, ids).items():
            run()  # warm-up: caches, prepared plans
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                run()
                times.append(time.perf_counter() - started)
                session.rollback()  # a fresh snapshot, as each page run has
            figures.append((page, statistics.median(times), max(times)))
    return figures


def scratch_postgres(admin_url: str) -> tuple[str, Callable[[], None]]:
    name = f"edgebench_bench_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(
        admin_url.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        engine_for(url).dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    return url, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--postgres-admin",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a server where this script may create (and then drops) a scratch database",
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch store and print its URL"
    )
    parser.add_argument(
        "--reuse",
        metavar="URL",
        help="time a store an earlier --keep run left (migrated to head first), no seeding",
    )
    args = parser.parse_args()
    if args.reuse and "bench" not in args.reuse.rsplit("/", 1)[-1]:
        parser.error(f"--reuse takes a scratch store this script kept, not {args.reuse!r}")

    if args.reuse:
        url, cleanup = args.reuse, lambda: None
    elif args.store == "sqlite":
        folder = tempfile.mkdtemp(prefix="edgebench-bench-")
        url = f"sqlite:///{Path(folder) / 'bench.db'}"

        def cleanup() -> None:
            shutil.rmtree(folder, ignore_errors=True)

    else:
        url, cleanup = scratch_postgres(args.postgres_admin)
    try:
        migrate.upgrade(url)
        print(f"scratch store: {url}")
        if args.reuse:
            ids = bench_ids(url)
        else:
            started = time.monotonic()
            ids = seed(url, args.trials)
            print(f"seeded {args.trials:,} trials in {time.monotonic() - started:.0f} s")
        print(f"\n| page | median (s) | slowest of {args.repeat} (s) |\n| --- | --- | --- |")
        for page, median, slowest in time_pages(url, ids, args.repeat):
            flag = "" if slowest < 1.0 else "  ← over 1 s"
            print(f"| {page} | {median:.3f} | {slowest:.3f} |{flag}")
    finally:
        if args.keep or args.reuse:
            print(f"kept: {url}")
        else:
            cleanup()


if __name__ == "__main__":
    main()
