"""The broker stopped for 10 s and restarted on its port, and the controller killed -9 and
restarted, each mid-campaign (REPEATS times in one campaign): the campaign completes by
itself with the invariants holding.

These tests run their own redis-server (orchestrator.broker, as `edgebench server` does), so
stopping it does not disturb the rest of the suite; the last one lets `edgebench server`
start and supervise its embedded broker, and kills it -9. It keeps nothing on disk, like the
embedded broker: what was queued when it stopped is gone, and the store has to make up for it.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from agents.contract import EMBEDDED_BROKER_FILE
from orchestrator import broker
from tests.e2e.conftest import Fleet
from tests.faults.conftest import REPEATS, finish_repeated, online, repeat_fault, submit

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_fleet(tmp_path):
    from orchestrator.artifacts.registry import build_and_register
    from orchestrator.store import migrate

    try:
        redis = broker.start(tmp_path / "broker", record=False)
    except broker.BrokerError as exc:
        from tests.conftest import missing_service

        missing_service(f"cannot start redis-server: {exc}")
    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(database_url)
    fleet = Fleet(tmp_path, redis.url, database_url)
    # What the broker lost is sent again once no agent started it within this.
    fleet.env["EDGEBENCH_START_TIMEOUT_S"] = "5"
    with fleet.sessions.begin() as session:
        build_and_register(session, tmp_path / "artifacts")
    fleet.redis = redis
    yield fleet
    fleet.stop()
    fleet.redis.stop()


def _started(fleet: Fleet, names: list[str], tmp_path, name: str) -> int:
    fleet.start_controller()
    for agent in names:
        fleet.start_agent(agent)
    fleet.wait_until(online(fleet, *names), 60, "the agents to register")
    # enough trials to go on through every repetition (about 5 a fault)
    repeats = max(3, 2 * REPEATS)
    return submit(fleet, tmp_path, name, names, batch_sizes=[1, 2, 4], repeats=repeats)


def test_redis_stopped_for_10_s_mid_campaign(own_fleet, tmp_path):
    fleet = own_fleet
    campaign = _started(fleet, ["north", "south"], tmp_path, "redis-outage")

    def outage():
        fleet.redis.stop()
        time.sleep(10)
        fleet.redis = broker.start(tmp_path / "broker", record=False)  # same port, password

    recoveries = repeat_fault(fleet, campaign, outage, "redis back")
    finish_repeated(fleet, campaign, "redis outage", recoveries)


def test_controller_killed_and_restarted_mid_campaign(own_fleet, tmp_path):
    fleet = own_fleet
    campaign = _started(fleet, ["east", "west"], tmp_path, "controller-kill")

    def kill_and_restart():
        fleet.kill9("controller")
        time.sleep(1)
        fleet.start_controller()

    recoveries = repeat_fault(fleet, campaign, kill_and_restart, "controller back")
    finish_repeated(fleet, campaign, "controller kill", recoveries)
    # the restarted controller did not wait out the dead one's lease (LEASE_TTL_S)
    assert "took over the lease" in fleet.log("controller")


@pytest.fixture
def embedded_fleet(tmp_path):
    """`edgebench server` with its own embedded broker (no EDGEBENCH_BROKER_URL): the agents
    find it in EDGEBENCH_HOME/broker.json, as on a user's machine."""
    from orchestrator.artifacts.registry import build_and_register
    from orchestrator.store import migrate

    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate.upgrade(database_url)
    fleet = Fleet(tmp_path, "", database_url)
    del fleet.env["EDGEBENCH_BROKER_URL"]
    fleet.env["EDGEBENCH_START_TIMEOUT_S"] = "5"
    with fleet.sessions.begin() as session:
        build_and_register(session, tmp_path / "artifacts")
    yield fleet
    fleet.stop()


def _broker_record(fleet: Fleet) -> dict | None:
    try:
        return json.loads((fleet.home / EMBEDDED_BROKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def test_the_embedded_broker_killed_9_mid_campaign_comes_back_by_itself(embedded_fleet, tmp_path):
    """Nothing restarts it from the test: the server that owns it brings it back on its port
    with its password within 2 s, each time, and the campaign completes."""
    fleet = embedded_fleet
    fleet.start_controller()
    record = fleet.wait_until(lambda: _broker_record(fleet), 60, "the embedded broker")
    names = ["up", "down"]
    for agent in names:
        fleet.start_agent(agent)
    fleet.wait_until(online(fleet, *names), 60, "the agents to register")
    repeats = max(3, 2 * REPEATS)  # enough trials to go on through every kill
    campaign = submit(fleet, tmp_path, "broker-kill", names, batch_sizes=[1, 2, 4], repeats=repeats)
    back_in = []

    def kill():
        killed = _broker_record(fleet)["pid"]
        os.kill(killed, signal.SIGKILL)
        started = time.monotonic()
        fleet.wait_until(
            lambda: (
                (_broker_record(fleet) or {}).get("pid") not in (None, killed)
                and broker.is_alive(record["url"])
            ),
            10,
            "the server to bring its broker back",
        )
        back_in.append(time.monotonic() - started)

    recoveries = repeat_fault(fleet, campaign, kill, "broker back")
    finish_repeated(
        fleet, campaign, "embedded broker kill -9", recoveries,
        f" broker back in {', '.join(f'{s:.2f}' for s in back_in)} s;",
    )  # fmt: skip
    assert max(back_in) <= 2.0, back_in
    assert _broker_record(fleet)["url"] == record["url"]  # same port, same password
    assert "restarted on port" in fleet.log("controller")
