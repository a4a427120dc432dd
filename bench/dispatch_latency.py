"""Submit -> trial running, on one idle agent: where the time goes.

Starts `edgebench server` (its embedded broker, a SQLite store in a temporary
EDGEBENCH_HOME) and one agent, registers the built-in ONNX models, then submits one-trial
campaigns (mlp_digits, one run of 10 queries) one after another, each once the previous one
has finished, alternately with the wake word `campaign submit` publishes and without it (the
scheduler's periodic pass, EDGEBENCH_SCHEDULER_INTERVAL_S). Prints the median of each step,
all on this machine's clock:

  plan+SQL     planning the campaign and writing it (what `campaign submit` does in-process)
  dispatch     written -> the trial sent to the agent's queue (scheduler pass, broker send)
  to runner    sent -> the runner's first timed query, in three parts:
    agent        sent -> the agent spawns the runner (receive, start message, spawn call)
    spawn        spawn -> the runner's code runs (a fresh Python, agents.runner imported)
    in runner    -> first timed query (harness check, artifact from the cache, runtime
                 import, model load, first inference; warm-up is 0 s here)
  started msg  sent -> the agent's start message stored by the controller
  result       first query -> the result stored (10 queries, fidelity, the message back)
  settled      the result stored -> the campaign marked finished
  total        submission started -> campaign finished

Usage: .venv/bin/python bench/dispatch_latency.py [--submissions 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns_fleet import wait_for  # noqa: E402

from agents.contract import EMBEDDED_BROKER_FILE
from orchestrator import planning, wake
from orchestrator.artifacts.registry import build_and_register
from orchestrator.campaigns.spec import parse_spec
from orchestrator.store import migrate
from orchestrator.store.models import Campaign, Device, Result, Trial
from orchestrator.store.session import session_factory

STEPS = (
    "plan+SQL", "dispatch", "to runner", "agent", "spawn", "in runner", "started msg", "result",
    "settled", "total",
)  # fmt: skip


def start(home: Path, env: dict, label: str, *args: str) -> subprocess.Popen:
    log = open(home / f"{label}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", *args],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def wait(predicate, timeout_s: float, what: str):  # noqa: ANN001, ANN201
    return wait_for(predicate, timeout_s, what, every_s=0.005)


def one_submission(sessions, url: str, index: int, notify: bool) -> dict[str, float]:  # noqa: ANN001
    spec = parse_spec({
        "name": f"dispatch-{index}", "devices": {"names": ["bench"]}, "models": ["mlp_digits"],
        "policy": {"warmup_s": 0, "min_queries": 10, "min_s": 0, "max_s": 1, "runs": 1,
                   "idle_baseline_s": 0},
    })  # fmt: skip
    submitted = time.time()
    with sessions.begin() as session:
        campaign, _ = planning.submit(session, spec)
        campaign_id = campaign.id
    written = time.time()
    if notify:
        wake.notify(url)

    def finished():  # noqa: ANN202
        with sessions() as session:
            return session.scalar(select(Campaign.finished_at).where(Campaign.id == campaign_id))

    done = wait(finished, 60, f"campaign {campaign_id}").timestamp()
    with sessions() as session:
        trial = session.scalars(select(Trial).where(Trial.campaign_id == campaign_id)).one()
        result = session.scalars(select(Result).where(Result.trial_id == trial.id)).one()
        sent, first = trial.dispatched_at.timestamp(), result.environment["measure_start_unix"]
        runner = result.environment["runner_started_unix"]
        spawned = runner - result.process_start_ms / 1e3
        return {
            "plan+SQL": written - submitted,
            "dispatch": sent - written,
            "to runner": first - sent,
            "agent": spawned - sent,
            "spawn": runner - spawned,
            "in runner": first - runner,
            "started msg": trial.started_at.timestamp() - sent,
            "result": result.received_at.timestamp() - first,
            "settled": done - result.received_at.timestamp(),
            "total": done - submitted,
        }


def report(label: str, rows: list[dict[str, float]]) -> None:
    print(f"{label} (n={len(rows)}), median ms:")
    for step in STEPS:
        print(f"  {step:<12} {statistics.median(r[step] for r in rows) * 1e3:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submissions", type=int, default=20, help="each way (wake, none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgebench-dispatch-") as tmp:
        home = Path(tmp)
        database_url = f"sqlite:///{home / 'store.db'}"
        migrate.upgrade(database_url)
        sessions = session_factory(database_url)
        with sessions.begin() as session:
            build_and_register(session, home / "artifacts")
        env = {**os.environ, "EDGEBENCH_HOME": str(home), "EDGEBENCH_DATABASE_URL": database_url}
        env.pop("EDGEBENCH_BROKER_URL", None)
        processes = [start(home, env, "server", "server")]
        try:
            record = wait(lambda: (home / EMBEDDED_BROKER_FILE).exists(), 60, "the broker")
            url = json.loads((home / EMBEDDED_BROKER_FILE).read_text())["url"] if record else ""
            processes.append(start(home, env, "agent", "agent", "start", "--name", "bench"))

            def online():  # noqa: ANN202
                with sessions() as session:
                    return session.scalar(select(Device.last_heartbeat_at))

            wait(online, 120, "the agent to register")
            one_submission(sessions, url, 0, True)  # warm: artifact fetched and cached
            rows: dict[bool, list] = {True: [], False: []}
            for index in range(1, 2 * args.submissions + 1):
                notify = index % 2 == 1
                rows[notify].append(one_submission(sessions, url, index, notify))
            print(f"{args.submissions} submissions each way, one idle agent, this machine:")
            report("wake word", rows[True])
            report("periodic pass", rows[False])
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)


if __name__ == "__main__":
    main()
