"""Fault scenarios run on the fleet of real processes from tests/e2e (controller, agents,
real Redis, real store); helpers shared by the scenarios."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import select

from orchestrator.store.models import Campaign, Device, Trial
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Fleet
from tests.faults import invariants

fleet = e2e.fleet  # the fixture, reused

# How often the broker, controller and PostgreSQL scenarios inject their fault in one
# campaign: 2 in the reduced suite (CI), more for the full run (docs/RELIABILITY.md).
REPEATS = int(os.environ.get("EDGEBENCH_FAULT_REPEATS", "2"))

FAST_POLICY = {"warmup_s": 0.1, "min_queries": 10, "min_s": 0.3, "max_s": 3}


def online(fleet: Fleet, *names: str, boot_other_than: str | None = None):
    """A predicate: every named device has heartbeats (from a process other than `boot_...`)."""

    def check():
        with fleet.sessions() as session:
            seen = {
                d.name
                for d in session.scalars(select(Device))
                if d.last_heartbeat_at and d.boot_id != boot_other_than
            }
        return set(names) <= seen

    return check


def submit(fleet: Fleet, tmp_path: Path, name: str, devices: list[str], **spec) -> int:
    """Submit a campaign of mlp_digits on the named devices; returns its id."""
    import json

    body = {
        "name": name,
        "devices": {"names": devices},
        "models": ["mlp_digits"],
        "policy": FAST_POLICY,
        "repeats": 1,  # one run per configuration unless the scenario asks for more
        **spec,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(body))  # YAML is a superset of JSON
    submitted = fleet.cli("campaign", "submit", str(path))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    with fleet.sessions() as session:
        return session.scalar(
            select(Campaign.id).where(Campaign.name == name).order_by(Campaign.id.desc())
        )


def trials_of(fleet: Fleet, campaign_id: int) -> list[Trial]:
    with fleet.sessions() as session:
        return list(session.scalars(select(Trial).where(Trial.campaign_id == campaign_id)))


def settled(fleet: Fleet, campaign_id: int):
    def check():
        trials = trials_of(fleet, campaign_id)
        return all(t.state in ("done", "failed", "cancelled") for t in trials) and trials

    return check


def device_boot(fleet: Fleet, name: str) -> str | None:
    with fleet.sessions() as session:
        return session.scalar(select(Device.boot_id).where(Device.name == name))


def done_count(fleet: Fleet, campaign_id: int) -> int:
    return sum(t.state == "done" for t in trials_of(fleet, campaign_id))


def repeat_fault(fleet: Fleet, campaign_id: int, inject, label: str) -> list[float]:
    """Inject a fault REPEATS times into a running campaign, each once the campaign has made
    progress; `inject()` returns when the fault is repaired. Returns, for each, the seconds
    from the repair to the next trial done (the time to recover)."""
    recoveries = []
    for repetition in range(REPEATS):
        before = done_count(fleet, campaign_id)
        fleet.wait_until(
            lambda b=before: done_count(fleet, campaign_id) >= b + 2, 120, "the campaign to go on"
        )
        at_fault = done_count(fleet, campaign_id)
        inject()
        repaired = time.monotonic()
        fleet.wait_until(
            lambda a=at_fault: done_count(fleet, campaign_id) > a, 120, f"progress after {label}"
        )
        recoveries.append(time.monotonic() - repaired)
        print(f"{label} {repetition + 1}/{REPEATS}: next trial done {recoveries[-1]:.1f} s after")
    return recoveries


def finish_repeated(
    fleet: Fleet, campaign_id: int, what: str, recoveries: list[float], detail: str = ""
) -> list[Trial]:
    """Wait for a campaign that repeat_fault went through to finish; print its figures and
    check that the invariants hold and every trial is done."""
    back = time.monotonic()
    trials = fleet.wait_until(settled(fleet, campaign_id), 180, "the campaign to finish")
    print(
        f"{what} x{len(recoveries)}: {len(trials)} trials;{detail} next trial done "
        f"{', '.join(f'{r:.1f}' for r in recoveries)} s after each repair; "
        f"the campaign finished {time.monotonic() - back:.1f} s after the last"
    )
    invariants.assert_holds(fleet.database_url, campaign_id)
    assert {t.state for t in trials} == {"done"}, [(t.id, t.state, t.error) for t in trials]
    return trials
