"""The scheduler and its leases against a real store and a real Redis."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import pytest
import redis
from sqlalchemy import event, select

from agents.contract import (
    LatencySummary,
    Registration,
    TrialResult,
    TrialSpec,
    agent_queue,
    parse,
)
from agents.contract.statistics import summarize_ns
from orchestrator import planning, scheduler
from orchestrator.artifacts.registry import build_and_register
from orchestrator.campaigns.spec import parse_spec
from orchestrator.settings import Settings
from orchestrator.store import repository
from orchestrator.store.models import Device, Trial, utcnow
from orchestrator.store.session import session_factory
from orchestrator.transport import control_app

FACTS = {
    "device_class": "x86_64-cpu",
    "runtimes": [{"name": "onnxruntime", "version": "1", "devices": ["CPU"]}],
}
SETTINGS = Settings(offline_after_s=10, start_timeout_s=30)


@pytest.fixture
def setup(store_url, redis_url, tmp_path):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    sessions = session_factory(store_url)
    with sessions.begin() as session:
        for name in ("dev", "other"):
            repository.register_device(
                session,
                Registration(device=name, boot_id="b1", agent_version="t", facts=FACTS, sent_at=0),
            )
        build_and_register(session, tmp_path / "artifacts", ["mlp_digits"])
        spec = parse_spec(
            {
                "name": "s",
                "devices": {"names": ["dev"]},
                "models": ["mlp_digits"],
                "batch_sizes": [1, 2],
                "policy": {"runs": 1},
            }
        )
        planning.submit(session, spec)
    return sessions, control_app(redis_url), client


def queued_specs(client, device="dev") -> list[TrialSpec]:
    specs = []
    for raw in client.lrange(agent_queue(device), 0, -1):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        specs.append(parse(body[0][0]))
    return specs


def trials(sessions) -> list[Trial]:
    with sessions() as session:
        return list(session.scalars(select(Trial).order_by(Trial.seq)))


def edit(sessions, trial_id, **changes):
    with sessions.begin() as session:
        trial = session.get(Trial, trial_id)
        for key, value in changes.items():
            setattr(trial, key, value)


def edit_device(sessions, name="dev", **changes):
    with sessions.begin() as session:
        device = session.scalar(select(Device).where(Device.name == name))
        for key, value in changes.items():
            setattr(device, key, value)


def test_one_trial_at_a_time_per_device(setup):
    sessions, app, client = setup
    assert scheduler.dispatch(sessions, app, SETTINGS) == 1
    assert scheduler.dispatch(sessions, app, SETTINGS) == 0  # the device is busy
    [spec] = queued_specs(client)
    first, second = trials(sessions)
    assert (first.state, first.attempt, second.state) == ("queued", 1, "pending")
    assert spec.trial_id == first.id and spec.attempt == 1 and spec.batch_size == 1
    assert queued_specs(client, "other") == []


def test_device_still_running_a_cancelled_trial_gets_nothing(setup):
    sessions, app, client = setup
    scheduler.dispatch(sessions, app, SETTINGS)
    first = trials(sessions)[0]
    with sessions.begin() as session:
        repository.cancel_campaign(session, first.campaign_id)
        session.add(
            Trial(**{c: getattr(first, c) for c in ("campaign_id", "device_id", "model_id", "runtime",
                "requested_device", "precision", "scenario", "policy", "timeout_s")},
                id="c" * 32, seq=9, batch_size=4, state="pending", attempt=0)
        )  # fmt: skip
    edit_device(sessions, current_trial=first.id, last_heartbeat_at=utcnow())
    assert scheduler.dispatch(sessions, app, SETTINGS) == 0  # the agent still measures it
    edit_device(sessions, current_trial=None, last_heartbeat_at=utcnow())
    assert scheduler.dispatch(sessions, app, SETTINGS) == 1


def test_offline_devices_get_nothing(setup):
    sessions, app, client = setup
    edit_device(sessions, last_heartbeat_at=utcnow() - timedelta(seconds=60))
    assert scheduler.dispatch(sessions, app, SETTINGS) == 0
    assert client.llen(agent_queue("dev")) == 0


def test_agent_restart_requeues_with_a_new_attempt(setup):
    sessions, app, client = setup
    scheduler.dispatch(sessions, app, SETTINGS)
    first = trials(sessions)[0]
    edit(sessions, first.id, state="running", started_at=utcnow())
    edit_device(sessions, boot_id="b2", last_heartbeat_at=utcnow())
    assert scheduler.dispatch(sessions, app, SETTINGS) == 1
    again = trials(sessions)[0]
    assert again.state == "queued" and again.attempt == 2 and again.boot_id == "b2"
    # Attempt 1 is still queued, addressed to the old agent process: the new one drops it.
    assert sorted((s.attempt, s.boot_id) for s in queued_specs(client)) == [(1, "b1"), (2, "b2")]


def test_agent_that_stopped_reporting_the_trial_loses_it(setup):
    sessions, app, _ = setup
    scheduler.dispatch(sessions, app, SETTINGS)
    first = trials(sessions)[0]
    edit(sessions, first.id, state="running", started_at=utcnow() - timedelta(seconds=30))
    edit_device(sessions, current_trial=None, last_heartbeat_at=utcnow())
    with sessions.begin() as session:
        assert scheduler.reap(session, SETTINGS) == 1
    assert "stopped running attempt 1" in trials(sessions)[0].note


def test_still_running_trial_is_left_alone(setup):
    sessions, app, _ = setup
    scheduler.dispatch(sessions, app, SETTINGS)
    first = trials(sessions)[0]
    edit(sessions, first.id, state="running", started_at=utcnow() - timedelta(seconds=30))
    edit_device(sessions, current_trial=first.id, last_heartbeat_at=utcnow())
    with sessions.begin() as session:
        assert scheduler.reap(session, SETTINGS) == 0


def test_queued_but_never_started_is_sent_again(setup):
    sessions, app, _ = setup
    scheduler.dispatch(sessions, app, SETTINGS)
    first = trials(sessions)[0]
    edit(sessions, first.id, dispatched_at=utcnow() - timedelta(seconds=120))
    with sessions.begin() as session:
        assert scheduler.reap(session, SETTINGS) == 1
    assert "not started within 30 s" in trials(sessions)[0].note


def test_past_its_lease_the_trial_fails_with_the_reason(setup):
    sessions, app, _ = setup
    scheduler.dispatch(sessions, app, SETTINGS)
    first = trials(sessions)[0]
    edit(sessions, first.id, state="running", started_at=utcnow() - timedelta(hours=2))
    edit_device(sessions, current_trial=first.id, last_heartbeat_at=utcnow())
    with sessions.begin() as session:
        scheduler.reap(session, SETTINGS)
    failed = trials(sessions)[0]
    assert failed.state == "failed" and "lease" in failed.error


def test_a_trial_lost_too_often_fails(setup):
    sessions, app, _ = setup
    scheduler.dispatch(sessions, app, SETTINGS)
    first = trials(sessions)[0]
    edit(sessions, first.id, attempt=repository.MAX_ATTEMPTS)
    edit_device(sessions, boot_id="b9")
    with sessions.begin() as session:
        scheduler.reap(session, SETTINGS)
    failed = trials(sessions)[0]
    assert (
        failed.state == "failed"
        and f"gave up after {repository.MAX_ATTEMPTS} attempts" in failed.error
    )


def test_unreachable_broker_leaves_the_trial_pending_with_the_reason(setup):
    sessions, _, _ = setup
    dead = control_app("redis://:x@127.0.0.1:1/0")
    started = time.monotonic()
    assert scheduler.dispatch(sessions, dead, SETTINGS) == 0
    assert time.monotonic() - started < 30
    first = trials(sessions)[0]
    assert first.state == "pending" and "broker unreachable" in first.note


def test_a_sent_trial_of_a_device_gone_offline_is_held_with_the_reason(setup):
    sessions, app, client = setup
    scheduler.dispatch(sessions, app, SETTINGS)
    first = trials(sessions)[0]
    edit(sessions, first.id, state="running", started_at=utcnow())
    edit_device(sessions, current_trial=first.id, last_heartbeat_at=utcnow() - timedelta(minutes=5))
    assert scheduler.dispatch(sessions, app, SETTINGS) == 0
    held, pending = trials(sessions)
    assert held.state == "running" and held.attempt == 1  # kept: it may come back measured
    assert held.note.startswith("held: dev is offline since ") and "attempt 1" in held.note
    assert pending.state == "pending" and len(queued_specs(client)) == 1

    edit_device(sessions, last_heartbeat_at=utcnow())  # back, still running it
    scheduler.dispatch(sessions, app, SETTINGS)
    back = trials(sessions)[0]
    assert back.state == "running" and back.note is None and back.attempt == 1


def test_held_note_only_for_offline_devices(setup):
    sessions, _, _ = setup
    now = utcnow()
    with sessions() as session:
        trial = session.scalars(select(Trial)).first()
        trial.device.last_heartbeat_at = now
        assert scheduler.held_note(trial, trial.device, now, SETTINGS) is None
        trial.device.last_heartbeat_at = None
        assert scheduler.held_note(trial, trial.device, now, SETTINGS) == (
            "held: dev is offline; attempt 0 resumes when it is back"
        )


def _result(trial: Trial, boot_id: str = "b1", attempt: int | None = None) -> TrialResult:
    return TrialResult(
        trial_id=trial.id,
        attempt=attempt or trial.attempt,
        device="dev",
        boot_id=boot_id,
        status="ok",
        summary=LatencySummary(**summarize_ns([10_000, 11_000, 12_000])),
        samples_ns=[10_000, 11_000, 12_000],
        sent_at=time.time(),
    )


def test_a_device_whose_result_is_in_gets_its_next_trial_without_waiting_for_a_heartbeat(
    setup,
):
    sessions, app, client = setup
    scheduler.dispatch(sessions, app, SETTINGS)
    first = trials(sessions)[0]
    # A heartbeat during the trial reported it; the agent's next one comes seconds later.
    edit(sessions, first.id, state="running", started_at=utcnow())
    edit_device(sessions, current_trial=first.id, last_heartbeat_at=utcnow())
    with sessions.begin() as session:
        assert repository.record_result(session, _result(first)) == "stored"
    assert scheduler.dispatch(sessions, app, SETTINGS) == 1
    assert sorted(s.trial_id for s in queued_specs(client)) == sorted(
        t.id for t in trials(sessions)
    )


def test_a_result_of_an_earlier_attempt_leaves_the_device_busy(setup):
    sessions, app, client = setup
    scheduler.dispatch(sessions, app, SETTINGS)
    first = trials(sessions)[0]
    edit(sessions, first.id, state="running", started_at=utcnow())
    edit_device(sessions, boot_id="b2", last_heartbeat_at=utcnow())  # the agent restarted
    scheduler.dispatch(sessions, app, SETTINGS)  # attempt 2, to the new agent process
    edit(sessions, first.id, state="running", started_at=utcnow())
    edit_device(sessions, current_trial=first.id, last_heartbeat_at=utcnow())
    with sessions.begin() as session:  # attempt 1's result, from the old process' outbox
        assert repository.record_result(session, _result(first, attempt=1)) == "stored"
    assert trials(sessions)[0].state == "done"
    assert scheduler.dispatch(sessions, app, SETTINGS) == 0  # it still runs attempt 2


def test_a_round_with_busy_devices_costs_a_few_statements_not_some_per_device(setup):
    sessions, app, _ = setup
    with sessions.begin() as session:
        for index in range(20):
            device = repository.register_device(
                session,
                Registration(
                    device=f"busy-{index}", boot_id="b1", agent_version="t", facts=FACTS, sent_at=0
                ),
            )
            trial = session.scalars(select(Trial)).first()
            session.add(
                Trial(**{c: getattr(trial, c) for c in ("campaign_id", "model_id", "runtime",
                    "requested_device", "precision", "scenario", "policy", "timeout_s")},
                    id=f"{index:032d}", device_id=device.id, seq=10 + index, batch_size=1,
                    state="running", attempt=1, boot_id="b1", started_at=utcnow())
            )  # fmt: skip
            device.current_trial = f"{index:032d}"
    for name in ("dev", "other"):  # offline: nothing to send this round
        edit_device(sessions, name, last_heartbeat_at=utcnow() - timedelta(minutes=5))
    statements = []
    engine = sessions.kw["bind"]
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        scheduler.dispatch(sessions, app, SETTINGS)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(statements) < 15, "\n".join(statements)  # was 2 per busy device, 44 here


def test_a_runtime_its_agent_declares_is_planned_with_the_format_it_reports(store_url, tmp_path):
    """The controller keeps no table of which runtime loads which format: a device whose
    registration offers a runtime new to it (here `tvm`, loading ONNX) gets its trials."""
    facts = {
        "device_class": "jetson-orin",
        "runtimes": [
            {"name": "tvm", "version": "0.20", "devices": ["CPU"], "formats": {"CPU": ["onnx"]}}
        ],
    }
    sessions = session_factory(store_url)
    with sessions.begin() as session:
        repository.register_device(
            session,
            Registration(device="orin", boot_id="b1", agent_version="t", facts=facts, sent_at=0),
        )
        build_and_register(session, tmp_path / "artifacts", ["mlp_digits"])
        spec = parse_spec(
            {"name": "t", "devices": {"names": ["orin"]}, "models": ["mlp_digits"],
             "runtimes": ["tvm"], "policy": {"runs": 1}}
        )  # fmt: skip
        _, plan = planning.submit(session, spec)
    assert plan.skipped == []
    [trial] = trials(sessions)
    with sessions() as session:
        trial = session.get(Trial, trial.id)
        assert (trial.runtime, trial.model.format) == ("tvm", "onnx")
