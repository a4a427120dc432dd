"""PostgreSQL restarted while results are being ingested: every open connection of the
controller is cut and, for the moment the server is down, every ingest and scheduler pass
fails. The campaign completes by itself, every result the agents sent is in the store once,
and the invariants hold.

The server is the suite's local PostgreSQL (tests/run.sh starts it), stopped for 3 s and started
again with `pg_ctlcluster` as root (a plain restart is over so quickly that no ingest fails); a finalizer starts it again if the test fails half-way. Without
pg_ctlcluster (or root) the test is skipped, and failed in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy

from tests.faults.conftest import REPEATS, finish_repeated, online, repeat_fault, submit

pytestmark = pytest.mark.e2e

OUTAGE_S = 3


def _cluster() -> list[str]:
    from tests.conftest import missing_service

    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        missing_service("restarting PostgreSQL needs pg_ctlcluster, run as root")
    versions = sorted(
        Path("/etc/postgresql").iterdir(),
        key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()],
    )
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1].name, "main"]


def _pg(cluster: list[str], action: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cluster, action], capture_output=True, text=True, timeout=60)


def _reachable(url: str) -> bool:
    from orchestrator.store.session import engine_for

    try:
        with engine_for(url).connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
        return True
    except sqlalchemy.exc.OperationalError:
        return False


@pytest.fixture
def restartable_postgres(request):
    cluster = _cluster()

    def ensure_running():
        if "online" not in _pg(cluster, "status").stdout:
            _pg(cluster, "start")

    request.addfinalizer(ensure_running)
    return cluster


@pytest.mark.parametrize("fleet", ["postgresql"], indirect=True)
def test_postgres_restarted_while_results_are_ingested(restartable_postgres, fleet, tmp_path):
    fleet.start_controller()
    names = ["left", "right"]
    for name in names:
        fleet.start_agent(name)
    fleet.wait_until(online(fleet, *names), 60, "the agents to register")
    campaign = submit(
        fleet, tmp_path, "pg-restart", names, batch_sizes=[1, 2, 4], repeats=max(3, 2 * REPEATS)
    )
    downtimes = []

    def outage():
        down = time.monotonic()
        stopped = _pg(restartable_postgres, "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        time.sleep(OUTAGE_S)  # results keep arriving: ingest fails, the messages wait
        started = _pg(restartable_postgres, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        fleet.wait_until(lambda: _reachable(fleet.database_url), 60, "PostgreSQL to accept")
        downtimes.append(time.monotonic() - down)

    recoveries = repeat_fault(fleet, campaign, outage, "postgres back")
    down = ", ".join(f"{d:.1f}" for d in downtimes)
    finish_repeated(fleet, campaign, "postgres restart", recoveries, f" down {down} s;")
    # Nothing the agents measured is still waiting to be sent: all of it reached the store.
    leftover = sorted(p.name for p in Path(tmp_path).glob("**/outbox/*.json"))
    assert leftover == [], leftover
    # The outage did hit ingest, and the retried messages were stored.
    assert "store unavailable" in fleet.log("controller")
