"""kill -9 of an agent during a trial, at different moments, restarting it each time: the
campaign ends with every trial done once and the invariants holding.

Moments (cycled over the repetitions): right when the controller marks the trial running
(the runner is being spawned), during the model load, during timing, and the moment the
runner's result file appears (the agent is reading it, signing it, writing the outbox and
sending it). EDGEBENCH_FAULT_KILLS sets the number of repetitions: 20 by default, 10 in CI
(CI=true) so the fault suite stays under its 3 minutes on two cores (about 4 s a kill).
"""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import select

from orchestrator.store.models import Trial
from tests.conftest import IN_CI
from tests.faults import invariants
from tests.faults.conftest import device_boot, online, settled, submit

pytestmark = pytest.mark.e2e

KILLS = int(os.environ.get("EDGEBENCH_FAULT_KILLS", "10" if IN_CI else "20"))
# Seconds after the trial is marked running; "result": when the runner's result appears.
MOMENTS = [0.0, 0.4, 1.0, "result", 0.2, 0.8, "result"]


def _running(fleet, campaign_id: int, boot_id: str):
    """A running trial of this agent process that was not killed twice already."""

    def check():
        with fleet.sessions() as session:
            trial = session.scalar(
                select(Trial).where(
                    Trial.campaign_id == campaign_id,
                    Trial.state == "running",
                    Trial.boot_id == boot_id,
                )
            )
            return trial and trial.attempt <= 2 and trial.id

    return check


def _wait_for_result_file(work_dir, timeout: float = 20) -> str:
    """Poll the agent's work dir until a runner's result.json or an outbox file appears."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any((work_dir / "outbox").glob("*.json")):
            return "outbox"
        if any(work_dir.glob("trial-*/result.json")):
            return "result"
        time.sleep(0.005)
    return "none"


def test_kill_9_at_many_moments_loses_and_doubles_nothing(fleet, tmp_path):
    fleet.start_controller()
    fleet.start_agent("victim")
    fleet.wait_until(online(fleet, "victim"), 60, "the agent to register")
    work_dir = fleet.home / "agent" / "victim"
    # Each trial is killed at most twice (5 losses fail a trial): enough trials for KILLS.
    campaign = submit(
        fleet,
        tmp_path,
        "agent-kill",
        ["victim"],
        batch_sizes=[1, 2],
        repeats=KILLS // 2 + 2,
        policy={"warmup_s": 0.1, "min_queries": 10, "min_s": 1.0, "max_s": 3},
    )
    started = time.monotonic()
    landed: dict[str, int] = {}
    early = 0  # kills within 0.5 s of the trial running: long before its result exists
    for kill in range(KILLS):
        boot = device_boot(fleet, "victim")
        fleet.wait_until(_running(fleet, campaign, boot), 60, f"a trial to run (kill {kill})")
        moment = MOMENTS[kill % len(MOMENTS)]
        if moment == "result":
            where = _wait_for_result_file(work_dir)
        else:
            time.sleep(moment)
            where = f"{moment:.1f}s"
            early += moment < 0.5
        fleet.kill9("agent-victim")
        if any((work_dir / "outbox").glob("*.json")):
            where += "+outbox"  # the result was on disk, not yet sent
        landed[where] = landed.get(where, 0) + 1
        fleet.start_agent("victim")
        fleet.wait_until(
            online(fleet, "victim", boot_other_than=boot), 60, "the agent to come back"
        )
    trials = fleet.wait_until(settled(fleet, campaign), 120, "the campaign to finish")
    elapsed = time.monotonic() - started
    print(f"{KILLS} kills ({landed}); {len(trials)} trials; {elapsed:.1f} s")
    invariants.assert_holds(fleet.database_url, campaign)
    assert {t.state for t in trials} == {"done"}, [(t.id, t.error) for t in trials]
    # A kill before the result exists costs an attempt; one after the result reached the
    # outbox (or the controller) does not: the restarted agent sends the result it kept.
    # And no attempt without a kill.
    assert early <= sum(t.attempt - 1 for t in trials) <= KILLS
