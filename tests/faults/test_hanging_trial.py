"""A trial that does not return within its time limit is killed at the limit, reported failed
with a reason naming the limit, and the agent goes on to the next trial.

The hang: the first trial's limit is set to 1 s in the store before it is sent, while its
policy measures for at least 5 s, paced (the runner would go on well past the limit).
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, update

from orchestrator.store import repository
from orchestrator.store.models import Device, Trial, utcnow
from tests.faults import invariants
from tests.faults.conftest import device_boot, online, settled, submit

pytestmark = pytest.mark.e2e


def _offline(fleet, name: str) -> bool:
    with fleet.sessions() as session:
        device = session.scalar(select(Device).where(Device.name == name))
        return not repository.is_online(
            device, utcnow(), float(fleet.env["EDGEBENCH_OFFLINE_AFTER_S"])
        )


def test_a_hanging_trial_is_killed_at_its_limit_and_the_agent_goes_on(fleet, tmp_path):
    fleet.start_controller()
    # The device registers, then goes offline: its trials wait, pending, for the edit below.
    fleet.start_agent("slowpoke")
    fleet.wait_until(online(fleet, "slowpoke"), 60, "the agent to register")
    boot = device_boot(fleet, "slowpoke")
    fleet.kill9("agent-slowpoke")
    fleet.wait_until(lambda: _offline(fleet, "slowpoke"), 30, "the device to be offline")
    campaign = submit(
        fleet,
        tmp_path,
        "hang",
        ["slowpoke"],
        batch_sizes=[1, 2],
        policy={"warmup_s": 0.1, "min_queries": 10, "min_s": 5, "max_s": 8},
        # Paced, so that it lasts its 5 s on any CPU: back to back, mlp_digits reached its
        # 100,000 queries (max_queries) in under a second on a fast one, within the limit.
        scenario={"kind": "paced", "gap_s": 0.5},
    )
    with fleet.sessions.begin() as session:
        trials = session.scalars(
            select(Trial).where(Trial.campaign_id == campaign).order_by(Trial.seq)
        ).all()
        hanging, normal = trials[0].id, trials[1].id
        session.execute(update(Trial).where(Trial.id == hanging).values(timeout_s=1.0))
    fleet.start_agent("slowpoke")
    fleet.wait_until(online(fleet, "slowpoke", boot_other_than=boot), 60, "the agent to return")
    started = time.monotonic()
    fleet.wait_until(settled(fleet, campaign), 60, "both trials to finish")
    elapsed = time.monotonic() - started
    with fleet.sessions() as session:
        first, second = session.get(Trial, hanging), session.get(Trial, normal)
        assert first.state == "failed" and first.attempt == 1
        assert "timed out after 1 s" in first.error, first.error
        # Killed at the limit, not after its 5 s of measurement.
        assert (first.finished_at - first.started_at).total_seconds() < 4
        assert second.state == "done", second.error
    assert not fleet.runner_pids(), "a runner outlived its time limit"
    invariants.assert_holds(fleet.database_url, campaign)
    print(f"hanging trial failed at its limit; campaign settled in {elapsed:.1f} s")
