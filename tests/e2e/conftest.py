"""A fleet of real processes: one controller and agents, each its own `edgebench` process,
talking through a real Redis and writing a real store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.store.session import session_factory


class Fleet:
    def __init__(self, home: Path, broker_url: str, database_url: str) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "EDGEBENCH_HOME": str(home),
            "EDGEBENCH_BROKER_URL": broker_url,
            "EDGEBENCH_DATABASE_URL": database_url,
            "EDGEBENCH_HEARTBEAT_S": "0.5",
            "EDGEBENCH_OFFLINE_AFTER_S": "4",
            "EDGEBENCH_SCHEDULER_INTERVAL_S": "0.3",
        }
        self.database_url = database_url
        self.sessions = session_factory(database_url)
        self.processes: dict[str, subprocess.Popen] = {}

    def _spawn(self, label: str, *args: str, python: str = sys.executable) -> subprocess.Popen:
        log = open(self.home / f"{label}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [python, "-m", "orchestrator.cli.main", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[label] = process
        return process

    def start_controller(self) -> subprocess.Popen:
        return self._spawn("controller", "server")

    def start_agent(
        self, name: str, tags: str = "e2e", python: str = sys.executable
    ) -> subprocess.Popen:
        return self._spawn(
            f"agent-{name}", "agent", "start", "--name", name, "--tags", tags, python=python
        )

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self, label: str) -> str:
        return (self.home / f"{label}.log").read_text(errors="replace")

    def wait_until(self, predicate, timeout: float, what: str):  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            for label, process in self.processes.items():
                if process.poll() is not None and not label.startswith("killed"):
                    raise AssertionError(
                        f"{label} exited ({process.returncode}):\n{self.log(label)[-3000:]}"
                    )
            time.sleep(0.2)
        logs = "\n".join(f"--- {label}\n{self.log(label)[-2000:]}" for label in self.processes)
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def runner_pids(self) -> set[int]:
        """Trial runner processes of this fleet's agents (their spec lies under its home):
        not those of anything else running on the machine."""
        pids = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    command = handle.read()
            except OSError:
                continue
            if b"agents.runner" in command and str(self.home).encode() in command:
                pids.add(int(entry))
        return pids

    def kill9(self, label: str) -> None:
        process = self.processes.pop(label)
        process.kill()
        process.wait()
        self.processes[f"killed-{label}-{process.pid}"] = process

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(params=["sqlite"])
def fleet(request, tmp_path, redis_url):
    """A fleet on a migrated store; parametrize indirectly with "postgresql" for PostgreSQL."""
    import redis

    from orchestrator.artifacts.registry import build_and_register
    from orchestrator.store import migrate

    redis.Redis.from_url(redis_url).flushdb()  # queues of earlier tests must not leak in
    if request.param == "postgresql":
        database_url = request.getfixturevalue("postgres_url")
    else:
        database_url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(database_url)
    fleet = Fleet(tmp_path, redis_url, database_url)
    with fleet.sessions.begin() as session:
        build_and_register(session, tmp_path / "artifacts")
    yield fleet
    fleet.stop()
