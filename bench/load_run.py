"""A load run: one real controller, N agents as separate processes, one big campaign.

Starts its own redis-server (orchestrator.broker, as `edgebench server` does), a scratch
store (a new PostgreSQL database on --postgres-admin, dropped afterwards; or a SQLite file),
`edgebench server` (one process), and N agents (`edgebench agent start`), each with its own
device name, home and work folder, enrolled like a provisioned device (a one-time token for
its name in EDGEBENCH_ENROLLMENT_TOKEN, the artifact token in EDGEBENCH_ARTIFACT_TOKEN, no
database credentials). Registers the tiny `mlp_digits` model and submits, with
`edgebench campaign submit`, one campaign of at least --trials short onnxruntime trials
spread evenly over the agents (batch sizes 1-16 x repeats). Every trial is real: a fresh
`agents.runner` process loads the model, measures and checks fidelity.

Prints what was measured: submit to first trial running, dispatch rate (mean and peak),
results stored per second, the makespan against the ideal (sum of trial times / agents,
on the controller's clock and on the agents'), where the devices' time went, how late
messages reached the controller, the controller's RSS (after startup, max, end; VmRSS
every 2 s), CPU use, the agents' state at the end, and the campaign invariants of
tests/faults/invariants.py (nothing lost, doubled or stuck).

The simulated devices share this machine's CPUs (a trial costs ~0.4 CPU-s here, mostly
the runner's start and imports), so "makespan / CPU floor" (the agents' CPU-seconds over
the cores) says how close the run came to what the machine allows. The agents run at
nice 10 (--agent-nice) so the controller, which has a machine of its own in a real fleet,
is not starved by them. --gap-s makes trials paced (idle gaps: longer, little more CPU).
Everything it started is stopped on exit (Ctrl-C included); --keep keeps the folder and
the scratch database for a look.

Usage: .venv/bin/python bench/load_run.py [--agents 50] [--trials 5000]
       [--store postgresql|sqlite] [--min-s 0.1] [--gap-s S] [--heartbeat-s S] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dashboard_queries import scratch_postgres  # noqa: E402  (bench/ is on sys.path)
from sqlalchemy import func, select  # noqa: E402

from agents.contract import CONTROL_QUEUE  # noqa: E402
from orchestrator import broker, enrollment  # noqa: E402
from orchestrator.artifacts.registry import build_and_register  # noqa: E402
from orchestrator.control_queue import TAKEN_KEY  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.store import migrate, repository  # noqa: E402
from orchestrator.store.models import (  # noqa: E402
    Campaign,
    Device,
    DeviceCredential,
    RejectedMessage,
    Result,
    Trial,
    utcnow,
)
from orchestrator.store.session import session_factory  # noqa: E402
from tests.faults import invariants  # noqa: E402

BATCH_SIZES = [1, 2, 4, 8, 16]
MIN_QUERIES = 20
CLI = [sys.executable, "-m", "orchestrator.cli.main"]


class Interrupted(Exception):
    pass


def _raise(signum, frame):  # noqa: ANN001, ANN202
    raise Interrupted(f"signal {signum}")


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process, in MB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int, children: bool = False) -> float | None:
    """CPU seconds a process used (with its waited-for children: the agents' trial runs)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = [int(f) for f in fields[11:15]]  # utime stime cutime cstime
    return sum(ticks if children else ticks[:2]) / TICK


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def kill_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


class Run:
    """The processes and the store of one load run."""

    def __init__(self, workdir: Path, url: str, broker_url: str) -> None:
        self.workdir = workdir
        self.url = url
        self.broker_url = broker_url
        self.sessions = session_factory(url)
        self.home = workdir / "controller"
        self.home.mkdir(parents=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EDGEBENCH_")},
            "EDGEBENCH_HOME": str(self.home),
            "EDGEBENCH_DATABASE_URL": url,
            "EDGEBENCH_BROKER_URL": broker_url,
        }
        self.controller: subprocess.Popen | None = None
        self.agents: dict[str, subprocess.Popen] = {}

    def spawn(
        self, label: str, args: list[str], env: dict[str, str], nice: int = 0
    ) -> subprocess.Popen:
        log = open(self.workdir / f"{label}.log", "ab")  # noqa: SIM115
        prefix = ["nice", "-n", str(nice)] if nice else []  # nice execs: the pid is the agent's
        return subprocess.Popen(
            prefix + CLI + args,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, label: str, lines: int = 30) -> str:
        text = (self.workdir / f"{label}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def start_controller(self) -> None:
        self.controller = self.spawn("controller", ["server"], self.env)
        record = self.home / "artifact_server.json"
        wait_for(lambda: record.exists(), 120, "the controller's artifact server", self)

    def start_agent(self, name: str, nice: int, heartbeat_s: float | None) -> None:
        with self.sessions.begin() as session:
            token = enrollment.token_for_device(session, name, timedelta(hours=1))
        home = self.workdir / "agents" / name
        env = {
            **{k: v for k, v in self.env.items() if k != "EDGEBENCH_DATABASE_URL"},
            "EDGEBENCH_HOME": str(home / "home"),
            "EDGEBENCH_WORK_DIR": str(home / "work"),
            "EDGEBENCH_ENROLLMENT_TOKEN": token,
            "EDGEBENCH_ARTIFACT_TOKEN": (self.home / "artifact_token").read_text().strip(),
        }
        if heartbeat_s:
            env["EDGEBENCH_HEARTBEAT_S"] = str(heartbeat_s)
        self.agents[name] = self.spawn(
            f"agent-{name}", ["agent", "start", "--name", name, "--tags", "load"], env, nice
        )

    def check_alive(self) -> None:
        if self.controller is not None and self.controller.poll() is not None:
            raise RuntimeError(
                f"the controller exited ({self.controller.returncode}):\n"
                + self.log_tail("controller")
            )
        for name, process in self.agents.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"agent {name} exited ({process.returncode}):\n"
                    + self.log_tail(f"agent-{name}")
                )

    def stop(self) -> None:
        processes = [*self.agents.values(), *([self.controller] if self.controller else [])]
        for process in processes:
            if process.poll() is None:
                kill_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            kill_group(process, signal.SIGKILL)  # the group: trial processes too
            process.wait()


def wait_for(predicate, timeout: float, what: str, run: Run | None = None):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if run is not None:
            run.check_alive()
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def online_count(run: Run, names: list[str]) -> int:
    with run.sessions() as session:
        return session.scalar(
            select(func.count())
            .select_from(Device)
            .where(Device.name.in_(names), Device.last_heartbeat_at.is_not(None))
        )


def state_counts(run: Run, campaign_id: int) -> dict[str, int]:
    with run.sessions() as session:
        rows = session.execute(
            select(Trial.state, func.count())
            .where(Trial.campaign_id == campaign_id)
            .group_by(Trial.state)
        )
        return dict(rows.all())


def campaign_done(run: Run, campaign_id: int) -> bool:
    with run.sessions() as session:
        return (
            session.scalar(select(Campaign.finished_at).where(Campaign.id == campaign_id))
            is not None
        )


def makespan_s(run: Run, campaign_id: int) -> float | None:
    with run.sessions() as session:
        submitted = session.scalar(select(Campaign.created_at).where(Campaign.id == campaign_id))
        last = session.scalar(
            select(func.max(Trial.finished_at)).where(Trial.campaign_id == campaign_id)
        )
    if last is None:
        return None
    return (repository.as_utc(last) - repository.as_utc(submitted)).total_seconds()


def peak_rate(moments: list[float], window_s: float) -> float:
    """The most events in any window of `window_s` seconds, per second."""
    moments = sorted(moments)
    best, first = 0, 0
    for last, moment in enumerate(moments):
        while moment - moments[first] >= window_s:
            first += 1
        best = max(best, last - first + 1)
    return best / window_s


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def figures(run: Run, campaign_id: int, agents: int) -> list[tuple[str, str]]:
    """Every figure from the store: timestamps are the controller's (ingest) clock."""
    utc = repository.as_utc
    with run.sessions() as session:
        campaign = session.get(Campaign, campaign_id)
        submitted = utc(campaign.created_at).timestamp()
        finished_campaign = utc(campaign.finished_at).timestamp() if campaign.finished_at else None
        trials = [
            {
                "id": t.id,
                "device": t.device_id,
                "state": t.state,
                "attempt": t.attempt,
                "dispatched": utc(t.dispatched_at).timestamp() if t.dispatched_at else None,
                "started": utc(t.started_at).timestamp() if t.started_at else None,
                "finished": utc(t.finished_at).timestamp() if t.finished_at else None,
            }
            for t in session.scalars(select(Trial).where(Trial.campaign_id == campaign_id))
        ]
        agent_rows = session.execute(
            select(Result.trial_id, Result.process_start_ms, Result.wall_s, Result.environment)
            .join(Trial, Trial.id == Result.trial_id)
            .where(Trial.campaign_id == campaign_id)
        ).all()
    by_id = {t["id"]: t for t in trials}
    agent_side = [(r.process_start_ms or 0) / 1000 + r.wall_s for r in agent_rows if r.wall_s]
    # The agents' wall clock is this machine's: compare it with the controller's marks.
    to_measure, from_measure = [], []
    for r in agent_rows:
        env, t = r.environment or {}, by_id[r.trial_id]
        if env.get("measure_start_unix") and t["dispatched"]:
            to_measure.append(env["measure_start_unix"] - t["dispatched"])
        if env.get("measure_end_unix") and t["finished"]:
            from_measure.append(t["finished"] - env["measure_end_unix"])
    rows: list[tuple[str, str]] = []
    states = {s: sum(t["state"] == s for t in trials) for s in {t["state"] for t in trials}}
    rows.append(
        ("trials", f"{len(trials)} ({', '.join(f'{k} {v}' for k, v in sorted(states.items()))})")
    )
    started = [t["started"] for t in trials if t["started"]]
    dispatched = [t["dispatched"] for t in trials if t["dispatched"]]
    finished = [t["finished"] for t in trials if t["finished"]]
    if dispatched:
        rows.append(("submit -> first trial sent", f"{min(dispatched) - submitted:.2f} s"))
    if started:
        rows.append(("submit -> first trial running", f"{min(started) - submitted:.2f} s"))
    sends = sum(t["attempt"] for t in trials)
    rows.append(("dispatches", f"{sends} ({sends - len(dispatched)} re-sent)"))
    if len(dispatched) > 1:
        span = max(dispatched) - min(dispatched)
        rows.append(
            ("dispatch rate, mean", f"{len(dispatched) / span:.1f} trials/s over {span:.1f} s")
        )
        rows.append(
            (
                "dispatch rate, peak",
                f"{peak_rate(dispatched, 1):.0f}/s (1 s), {peak_rate(dispatched, 10):.1f}/s (10 s)",
            )
        )
    if len(finished) > 1:
        span = max(finished) - min(finished)
        rows.append(
            (
                "results stored, mean",
                f"{len(finished) / span:.1f}/s (peak {peak_rate(finished, 10):.1f}/s over 10 s)",
            )
        )
    durations = [t["finished"] - t["started"] for t in trials if t["started"] and t["finished"]]
    if finished and durations:
        makespan = max(finished) - submitted
        ideal = sum(durations) / agents
        rows.append(("makespan (submit -> last result)", f"{makespan:.1f} s"))
        if finished_campaign:
            rows.append(("submit -> campaign finished", f"{finished_campaign - submitted:.1f} s"))
        rows.append(
            (
                "trial time, controller clock",
                f"median {statistics.median(durations):.2f} s, p90 {quantile(durations, 0.9):.2f} s "
                f"(TrialStarted ingested -> result ingested)",
            )
        )
        rows.append(
            (
                "ideal, controller clock",
                f"{ideal:.1f} s (sum {sum(durations):.0f} s / {agents} agents)",
            )
        )
        rows.append(("makespan / ideal", f"{makespan / ideal:.3f} (target <= 1.1)"))
        if agent_side:
            ideal_agent = sum(agent_side) / agents
            rows.append(
                (
                    "trial time, agent clock",
                    f"median {statistics.median(agent_side):.2f} s (runner spawn -> measured; "
                    f"{len(agent_side)} results)",
                )
            )
            rows.append(
                (
                    "makespan / ideal, agent clock",
                    f"{makespan / ideal_agent:.3f} (ideal {ideal_agent:.1f} s)",
                )
            )
        rows.extend(idle_time(trials, submitted, max(finished), agents))
    for label, values in (
        ("trial sent -> agent measuring", to_measure),
        ("agent measured -> result stored", from_measure),
    ):
        if values:
            rows.append(
                (
                    label,
                    f"median {quantile(values, 0.5):.2f} s, p90 {quantile(values, 0.9):.2f} s, "
                    f"max {max(values):.2f} s",
                )
            )
    return rows


def idle_time(
    trials: list[dict], submitted: float, end: float, agents: int
) -> list[tuple[str, str]]:
    """Where the devices' time went that was not a trial: the gaps between trials."""
    by_device: dict[int, list[dict]] = {}
    for t in trials:
        if t["started"] and t["finished"] and t["dispatched"]:
            by_device.setdefault(t["device"], []).append(t)
    gaps, queued, first, tails = [], [], [], []
    for items in by_device.values():
        items.sort(key=lambda t: t["started"])
        first.append(items[0]["dispatched"] - submitted)
        tails.append(end - items[-1]["finished"])
        for t in items:
            queued.append(t["started"] - t["dispatched"])
        for prev, nxt in zip(items, items[1:]):
            gaps.append(nxt["dispatched"] - prev["finished"])
    total = (end - submitted) * agents
    busy = sum(t["finished"] - t["started"] for items in by_device.values() for t in items)

    def share(seconds: float) -> str:
        return f"{seconds:.0f} device-s ({100 * seconds / total:.1f} %)"

    rows = [
        ("device time, busy in trials", share(busy)),
        ("  before a device's first send", share(sum(first))),
        (
            "  result in -> next trial sent",
            share(sum(gaps))
            + f", median {quantile(gaps, 0.5) or 0:.2f} s, p90 {quantile(gaps, 0.9) or 0:.2f} s",
        ),
        (
            "  sent -> TrialStarted in",
            share(sum(queued))
            + f", median {quantile(queued, 0.5) or 0:.2f} s, p90 {quantile(queued, 0.9) or 0:.2f} s",
        ),
        (
            "  after a device's last result",
            share(sum(tails)) + f", max {max(tails, default=0):.1f} s",
        ),
    ]
    return rows


def agents_at_end(run: Run, names: list[str]) -> list[tuple[str, str]]:
    alive = sum(p.poll() is None for p in run.agents.values())
    rss = [r for r in (rss_mb(p.pid) for p in run.agents.values()) if r is not None]
    outbox = sum(
        len(list((run.workdir / "agents" / n / "work" / n / "outbox").glob("*.json")))
        for n in names
    )
    now = utcnow()
    with run.sessions() as session:
        devices = list(session.scalars(select(Device).where(Device.name.in_(names))))
        online = sum(repository.is_online(d, now, Settings().offline_after_s) for d in devices)
        busy = sum(d.current_trial is not None for d in devices)
        keys = session.scalar(select(func.count()).select_from(DeviceCredential))
        rejected = session.scalar(select(func.count()).select_from(RejectedMessage))
    return [
        ("agent processes alive", f"{alive} / {len(names)}"),
        ("devices online (heartbeats), enrolled keys", f"{online} online, {keys} keys"),
        ("devices whose last heartbeat named a trial", str(busy)),
        ("results left in agents' outboxes", str(outbox)),
        ("rejected messages", str(rejected)),
        ("agent RSS (each, median)", f"{statistics.median(rss):.0f} MB" if rss else "absent"),
    ]


def submit(
    run: Run, names: list[str], trials: int, min_s: float, gap_s: float | None
) -> tuple[int, float, int]:
    per_agent = math.ceil(trials / len(names))
    # As many batch sizes as divide the trials per agent evenly (5,000 on 50: 5 x 20 repeats).
    count = max(n for n in range(1, len(BATCH_SIZES) + 1) if per_agent % n == 0)
    batches, repeats = BATCH_SIZES[:count], per_agent // count
    spec = {
        "name": "load-run",
        "devices": {"names": names},
        "models": ["mlp_digits"],
        "runtimes": ["onnxruntime"],
        "batch_sizes": batches,
        "policy": {
            "warmup_s": 0.05,
            "min_queries": MIN_QUERIES,
            "min_s": min_s,
            "max_s": max(2.0, 2 * min_s + 1),
        },
        "repeats": repeats,
    }
    if gap_s:  # idle gaps between queries: a longer trial that costs the CPUs little more
        spec["scenario"] = {"kind": "paced", "gap_s": gap_s}
    path = run.workdir / "spec.yaml"
    path.write_text(json.dumps(spec))  # YAML is a superset of JSON
    started = time.monotonic()
    done = subprocess.run(
        CLI + ["campaign", "submit", str(path)], env=run.env, capture_output=True, text=True
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"campaign submit failed:\n{done.stdout}{done.stderr}")
    with run.sessions() as session:
        campaign_id = session.scalar(select(func.max(Campaign.id)))
        count = session.scalar(
            select(func.count()).select_from(Trial).where(Trial.campaign_id == campaign_id)
        )
    return campaign_id, took, count


def follow(run: Run, campaign_id: int, timeout: float) -> list[dict]:
    """Sample every 2 s until the campaign finishes; print progress every 15 s."""
    control = redis_client(run.broker_url)
    samples: list[dict] = []
    begun, last_print = time.monotonic(), 0.0
    while True:
        run.check_alive()
        now = time.monotonic() - begun
        samples.append(
            {
                "t": now,
                "rss": rss_mb(run.controller.pid),
                # Waiting in the queue, and taken by the controller but not yet acknowledged.
                "control_queue": control.llen(CONTROL_QUEUE),
                "unacked": sum(control.llen(k) for k in control.scan_iter(f"{TAKEN_KEY}.*")),
                "rtt_ms": round_trips(run, control),
            }
        )
        if campaign_done(run, campaign_id):
            return samples
        if now > timeout:
            raise RuntimeError(f"the campaign did not finish within {timeout:.0f} s")
        if now - last_print >= 15:
            last_print = now
            counts = state_counts(run, campaign_id)
            print(
                f"  {now:6.0f} s  "
                + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                + f"; controller {samples[-1]['rss']:.0f} MB, "
                f"{samples[-1]['control_queue']} + {samples[-1]['unacked']} messages queued + taken"
            )
        time.sleep(2)


def round_trips(run: Run, control) -> tuple[float, float]:  # noqa: ANN001
    """One SELECT 1 to the store and one PING to Redis, in ms, from this (nice 0) process:
    the latency every statement of the controller pays on this machine now."""
    with run.sessions() as session:
        session.execute(select(1))  # a pooled connection, ready
        started = time.perf_counter()
        session.execute(select(1))
        store = time.perf_counter() - started
    started = time.perf_counter()
    control.ping()
    return 1000 * store, 1000 * (time.perf_counter() - started)


def redis_client(url: str):  # noqa: ANN201
    import redis

    return redis.Redis.from_url(url)


def cpu_usage(run: Run) -> dict:
    return {
        "at": time.monotonic(),
        "host": host_cpu(),
        "controller": cpu_s(run.controller.pid),
        "agents": sum(cpu_s(p.pid, children=True) or 0 for p in run.agents.values()),
    }


def cpu_rows(before: dict, after: dict, makespan: float | None) -> list[tuple[str, str]]:
    """Who used the machine's CPUs while the campaign ran."""
    wall = after["at"] - before["at"]
    busy = after["host"][0] - before["host"][0]
    total = after["host"][1] - before["host"][1]
    cores = os.cpu_count() or 1
    controller = after["controller"] - before["controller"]
    agents = after["agents"] - before["agents"]
    return [
        ("host CPU busy during the campaign", f"{100 * busy / total:.0f} % of {cores} cores"),
        ("  controller process", f"{controller:.0f} CPU-s ({controller / wall:.2f} cores)"),
        (
            "  agents with their trial processes",
            f"{agents:.0f} CPU-s ({agents / wall:.2f} cores)",
        ),
        (
            "makespan / CPU floor",
            f"{makespan / (agents / cores):.2f} (floor: the agents' CPU-s / {cores} cores = "
            f"{agents / cores:.0f} s; the simulated devices share this machine's CPUs)"
            if makespan and agents
            else "absent",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--store", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--postgres-admin", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--timeout", type=float, help="seconds for the campaign (default: 600 + 2 s a trial)"
    )
    parser.add_argument(
        "--agent-nice",
        type=int,
        default=10,
        help="niceness of the agents and their trials (0: none); on a real fleet the "
        "controller has a machine of its own, here it shares the CPUs with every device",
    )
    parser.add_argument(
        "--min-s", type=float, default=0.1, help="policy.min_s of each trial (default 0.1)"
    )
    parser.add_argument(
        "--gap-s",
        type=float,
        help="a paced scenario with this idle gap before each query (default: single_stream)",
    )
    parser.add_argument(
        "--heartbeat-s", type=float, help="agents' EDGEBENCH_HEARTBEAT_S (default: the product's)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the folder and the scratch store")
    args = parser.parse_args()
    timeout = args.timeout or 600 + 2 * args.trials
    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, _raise)

    workdir = Path(tempfile.mkdtemp(prefix="edgebench-load-"))
    drop = lambda: None  # noqa: E731
    url = redis = run = None
    rows: list[tuple[str, str]] = []
    try:
        if args.store == "postgresql":
            url, drop = scratch_postgres(args.postgres_admin)
        else:
            url = f"sqlite:///{workdir / 'store.db'}"
        migrate.upgrade(url)
        redis = broker.start(workdir / "broker", record=False)
        run = Run(workdir, url, redis.url)
        with run.sessions.begin() as session:
            build_and_register(session, run.home / "artifacts", ["mlp_digits"])
        t0 = time.monotonic()
        run.start_controller()
        rss_startup = rss_mb(run.controller.pid)
        names = [f"load-{i:03d}" for i in range(args.agents)]
        for name in names:
            run.start_agent(name, args.agent_nice, args.heartbeat_s)
        wait_for(
            lambda: online_count(run, names) == len(names),
            120 + 5 * len(names),
            f"{len(names)} agents to register",
            run,
        )
        print(
            f"controller and {len(names)} agents up in {time.monotonic() - t0:.1f} s ({args.store})"
        )
        time.sleep(5)  # a few heartbeats in: the controller's steady state before the campaign
        rss_start = rss_mb(run.controller.pid)

        campaign_id, took, count = submit(run, names, args.trials, args.min_s, args.gap_s)
        print(
            f"campaign {campaign_id}: {count} trials submitted ({took:.1f} s for `campaign submit`)"
        )
        usage_before = cpu_usage(run)
        samples = follow(run, campaign_id, timeout)
        usage_after = cpu_usage(run)
        rss_end = rss_mb(run.controller.pid)
        print(f"campaign finished after {samples[-1]['t']:.1f} s")

        rows = figures(run, campaign_id, len(names))
        measured = [s["rss"] for s in samples if s["rss"] is not None]
        rows.append(
            (
                "controller RSS",
                f"after startup {rss_startup:.0f} MB, agents up {rss_start:.0f} MB, "
                f"max {max(measured):.0f} MB, end {rss_end:.0f} MB ({len(measured)} samples)",
            )
        )
        for label, key in (
            ("control queue, waiting (Redis)", "control_queue"),
            ("control queue, taken, not acknowledged", "unacked"),
        ):
            values = [s[key] for s in samples]
            rows.append(
                (label, f"median {statistics.median(values):.0f}, max {max(values)} messages")
            )
        for index, label in (
            (0, "round trip to the store (SELECT 1)"),
            (1, "round trip to Redis (PING)"),
        ):
            values = [s["rtt_ms"][index] for s in samples]
            rows.append(
                (
                    label,
                    f"median {statistics.median(values):.1f} ms, p90 {quantile(values, 0.9):.1f} ms "
                    "(sampled every 2 s)",
                )
            )
        rows.extend(cpu_rows(usage_before, usage_after, makespan_s(run, campaign_id)))
        rows.extend(agents_at_end(run, names))
        found = invariants.check(url, campaign_id)
        rows.append(
            (
                "invariants (tests/faults/invariants.py)",
                "hold" if not found else f"{len(found)} violated",
            )
        )
        for violation in found[:20]:
            print(f"  violated: {violation}")
    except Interrupted as exc:
        print(f"interrupted ({exc}); stopping everything")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if run is not None:
            run.stop()
        if redis is not None:
            redis.stop()
        if args.keep:
            print(f"kept: {workdir}, store {url}")
        else:
            drop()
            shutil.rmtree(workdir, ignore_errors=True)
    if rows:
        width = max(len(k) for k, _ in rows)
        heartbeat = args.heartbeat_s or "default"
        scenario = f"paced gap {args.gap_s} s" if args.gap_s else "single_stream"
        print(
            f"\n{args.agents} agents (nice {args.agent_nice}, heartbeat {heartbeat}), "
            f"{args.trials} trials requested ({scenario}, min_s {args.min_s}), {args.store}, "
            f"{os.cpu_count()} CPUs:"
        )
        for key, value in rows:
            print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
