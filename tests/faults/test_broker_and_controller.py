"""The broker stopped for 10 s and restarted on its port, and the controller killed -9 and
restarted, each mid-campaign (REPEATS times in one campaign): the campaign completes by
itself with the invariants holding.

These tests run their own redis-server (orchestrator.broker, as `edgebench server` does), so
stopping it does not disturb the rest of the suite. It keeps nothing on disk, like the
embedded broker: what was queued when it stopped is gone, and the store has to make up for it.
"""

from __future__ import annotations

import time

import pytest

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
