"""Sends pending trials to idle online devices, one at a time per device, and re-queues
trials whose agent lost them (restarted, or stopped reporting them).

A device that goes offline keeps its trials for a while (it may come back with a result in
its outbox), but not for ever: once it has been away longer than a trial's lease (the
trial's time limit + LEASE_GRACE_S), that trial fails, naming the device.

One outstanding trial per device keeps a device from measuring two things at once,
makes cancellation immediate, and lets the store, not the broker, hold the queue.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, object_session, sessionmaker

from agents.contract import (
    ArtifactRef,
    InputSpec,
    MeasurementPolicy,
    RuntimeOptions,
    TrialSpec,
)
from orchestrator.settings import Settings
from orchestrator.store import repository
from orchestrator.store.models import (
    DONE,
    FAILED,
    PENDING,
    QUEUED,
    RUNNING,
    Device,
    ModelCard,
    Result,
    Trial,
    utcnow,
)
from orchestrator.transport import send_trial

log = logging.getLogger("edgebench.scheduler")

# Grace beyond a trial's own time limit before the controller gives up waiting for it
# (the default of Settings.lease_grace_s, EDGEBENCH_LEASE_GRACE_S).
LEASE_GRACE_S = 60.0


def card_files(trial: Trial, settings: Settings) -> dict[str, ArtifactRef]:
    """The data files of the trial's model card by role ("reference": fp32 outputs and
    labels for fidelity; "sample_input": the values trials feed), replaced by the variant's
    own where it has them (its inputs named or its outputs laid out its own way)."""
    card = object_session(trial).scalar(select(ModelCard).where(ModelCard.name == trial.model.name))
    stored_files = {
        **((card.data or {}) if card is not None else {}),
        **(trial.model.recipe or {}).get("data", {}),
    }
    return {
        role: ArtifactRef(
            sha256=stored["sha256"],
            size=stored["size"],
            format="npz",
            uri=settings.artifact_uri(stored["sha256"], stored["path"]),
        )
        for role, stored in stored_files.items()
        if stored
    }


def trial_inputs(stored: list[dict], sweep: dict[str, list[int]] | None) -> list[InputSpec]:
    """The model's registered inputs, with a sweep's shapes where it gives one (the batch
    position keeps the registered size: dynamic, or the fixed batch)."""
    inputs = []
    for node in stored:
        spec = InputSpec.of(node)
        shape = (sweep or {}).get(spec.name)
        if shape is not None:
            axis = spec.batch_axis
            spec.shape = [spec.shape[i] if i == axis else d for i, d in enumerate(shape)]
        inputs.append(spec)
    return inputs


def trial_spec(trial: Trial, settings: Settings) -> TrialSpec:
    model = trial.model
    files = card_files(trial, settings)
    return TrialSpec(
        trial_id=trial.id,
        attempt=trial.attempt,
        boot_id=trial.boot_id or "",
        campaign_id=trial.campaign_id,
        device=trial.device.name,
        model=model.name,
        artifact=ArtifactRef(
            sha256=model.sha256,
            size=model.size,
            format=model.format,
            uri=settings.artifact_uri(model.sha256, model.path),
        ),
        reference=files.get("reference"),
        sample_input=files.get("sample_input"),
        inputs=trial_inputs(model.inputs, trial.input_shapes),
        runtime=trial.runtime,
        requested_device=trial.requested_device,
        runtime_options=RuntimeOptions(**(trial.runtime_options or {})),
        precision=trial.precision,
        batch_size=trial.batch_size,
        scenario=trial.scenario,
        scenario_params=trial.scenario_params or {},
        policy=MeasurementPolicy(**trial.policy),
        timeout_s=trial.timeout_s,
    )


def lost_reason(trial: Trial, device: Device, now: datetime, settings: Settings) -> str | None:
    """Why the device's agent no longer has this trial, or None while it may still have it.

    Only heartbeats count as evidence: an offline device may come back with the trial done.
    """
    seen = repository.as_utc(device.last_heartbeat_at)
    if seen is None or not repository.is_online(device, now, settings.offline_after_s):
        return None
    if device.boot_id and trial.boot_id and device.boot_id != trial.boot_id:
        return f"the agent on {device.name} restarted during attempt {trial.attempt}"
    if trial.state == RUNNING and device.current_trial != trial.id:
        if seen - repository.as_utc(trial.started_at) > timedelta(seconds=settings.offline_after_s):
            return f"the agent on {device.name} stopped running attempt {trial.attempt}"
    if trial.state == QUEUED and device.current_trial is None:
        waited = seen - repository.as_utc(trial.dispatched_at)
        if waited > timedelta(seconds=settings.start_timeout_s):
            return (
                f"attempt {trial.attempt} was not started within {settings.start_timeout_s:.0f} s"
            )
    return None


def lease_of(trial: Trial, settings: Settings) -> timedelta:
    """How long the controller waits for a trial's result once it started."""
    return timedelta(seconds=trial.timeout_s + settings.lease_grace_s)


def _offline_since(device: Device) -> str:
    seen = repository.as_utc(device.last_heartbeat_at)
    return f"no heartbeat since {seen:%H:%M:%S} UTC" if seen else "no heartbeat yet"


def _fail(session: Session, trial: Trial, now: datetime, error: str) -> None:
    trial.state, trial.finished_at, trial.error = FAILED, now, error
    repository.settle_campaign(session, trial.campaign_id)


def reap(session: Session, settings: Settings) -> int:
    """Re-queue trials whose agent lost them; fail those past their lease, and those of a
    device offline for longer than their lease. Returns a count."""
    now = utcnow()
    changed = 0
    for trial in repository.open_trials(session):
        device = trial.device
        online = repository.is_online(device, now, settings.offline_after_s)
        reason = lost_reason(trial, device, now, settings)
        lease = lease_of(trial, settings)
        if reason is not None:
            repository.requeue(session, trial, reason)
        elif trial.state == RUNNING:
            if now - repository.as_utc(trial.started_at) <= lease:
                continue
            error = f"no result within its lease ({lease.total_seconds():.0f} s)"
            if not online:  # kept for it while it might come back; it did not
                error += (
                    f": {device.name} went offline during attempt {trial.attempt} "
                    f"({_offline_since(device)}; its link is down or it is off)"
                )
            _fail(session, trial, now, error)
        elif trial.state == QUEUED and not online:
            # Sent, not started, and the device went away: it waits as pending does (and is
            # sent again when the device is back; an agent that got the first one too runs
            # both, and the second result is a duplicate).
            waited = now - repository.as_utc(trial.dispatched_at)
            if waited <= timedelta(seconds=settings.start_timeout_s):
                continue
            repository.requeue(
                session,
                trial,
                f"{device.name} went offline before starting attempt {trial.attempt}; "
                "sent again when it is back",
            )
        else:
            continue
        changed += 1
        log.warning("trial %s on %s: %s", trial.id, device.name, trial.error or trial.note)
    return changed + give_up_on_offline_devices(session, settings, now)


def give_up_on_offline_devices(session: Session, settings: Settings, now: datetime) -> int:
    """Fail the pending trials of devices that have been offline for longer than those
    trials' leases (counted from the later of the last heartbeat and the trial's creation):
    a device that never comes back must not keep a campaign open for ever."""
    away = [
        device
        for device in session.scalars(select(Device).where(Device.retired.is_(False)))
        if not repository.is_online(device, now, settings.offline_after_s)
        and (
            device.last_heartbeat_at is None
            or now - repository.as_utc(device.last_heartbeat_at)
            > timedelta(seconds=settings.lease_grace_s)  # no lease is shorter
        )
    ]
    if not away:
        return 0
    by_id = {device.id: device for device in away}
    pending = session.scalars(
        select(Trial)
        .where(Trial.device_id.in_(by_id), Trial.state == PENDING)
        .order_by(Trial.id)
        .with_for_update()
    )
    failed = 0
    for trial in pending:
        device = by_id[trial.device_id]
        since = repository.as_utc(trial.created_at)
        seen = repository.as_utc(device.last_heartbeat_at)
        if seen is not None and seen > since:
            since = seen
        lease = lease_of(trial, settings)
        if now - since <= lease:
            continue
        _fail(
            session,
            trial,
            now,
            f"not run: {device.name} has been offline longer than this trial's lease "
            f"({lease.total_seconds():.0f} s; {_offline_since(device)}): its link is down or it "
            "is off. Bring it back and submit again, or retire it",
        )
        failed += 1
        log.warning("trial %s on %s: %s", trial.id, device.name, trial.error)
    return failed


HELD = "held: "


def held_note(trial: Trial, device: Device, now: datetime, settings: Settings) -> str | None:
    """Why a sent trial waits: its device went offline with it (a cut link, say). It is
    kept, not sent elsewhere: the device may come back with it measured, its result in
    the agent's outbox, and another device would measure other hardware. A running one is
    kept until its lease ends (`reap` fails it then); the note says when."""
    if repository.is_online(device, now, settings.offline_after_s):
        return None
    seen = repository.as_utc(device.last_heartbeat_at)
    since = f" since {seen:%H:%M:%S} UTC" if seen else ""
    note = f"{HELD}{device.name} is offline{since}; attempt {trial.attempt} resumes when it is back"
    if trial.state == RUNNING and trial.started_at is not None:
        deadline = repository.as_utc(trial.started_at) + lease_of(trial, settings)
        note += f", or fails at {deadline:%H:%M:%S} UTC (its lease)"
    return note


def note_held(session: Session, settings: Settings) -> None:
    """Show on each sent trial of an offline device why it waits; clear that once it is back.
    (Pending trials of offline devices get their reason where they are read.)"""
    now = utcnow()
    for trial in repository.open_trials(session):
        note = held_note(trial, trial.device, now, settings)
        if note is not None:
            trial.note = note
        elif trial.note and trial.note.startswith(HELD):
            trial.note = None


def finished_by_agent(session: Session, trial_ids: set[str]) -> set[str]:
    """The trials among these whose agent has sent the result of their last attempt: it
    sends one only after the trial's process ended, so it no longer runs them, whatever its
    last heartbeat said. (A cancelled trial, or one failed by the controller, may still run;
    a failure message says not which attempt it was for, so only a first attempt counts.)"""
    if not trial_ids:
        return set()
    query = (
        select(Trial.id)
        .outerjoin(Result, Result.trial_id == Trial.id)
        .where(
            Trial.id.in_(trial_ids),
            or_(
                and_(Trial.state == DONE, Result.attempt == Trial.attempt),
                and_(
                    Trial.state == FAILED,
                    Trial.result_signature.is_not(None),
                    Trial.attempt == 1,
                ),
            ),
        )
    )
    return set(session.scalars(query))


def dispatch(sessions: sessionmaker[Session], app: Celery, settings: Settings) -> int:
    """Send the next pending trial to every online device that has none outstanding."""
    sent = 0
    with sessions.begin() as session:
        # Every device loaded once (and held: the session keeps its objects weakly), so the
        # open trials' `device` come from the session, not from a query per open trial,
        # twice (open_trials re-reads its rows). A round runs after every result: with 50
        # busy devices that was 104 statements, now 5.
        devices = list(session.scalars(select(Device)))
        reap(session, settings)
        note_held(session, settings)
        del devices
    with sessions() as session:
        now = utcnow()
        busy = set(
            session.scalars(select(Trial.device_id).where(Trial.state.in_((QUEUED, RUNNING))))
        )
        candidates = [
            device
            for device in session.scalars(select(Device).where(Device.retired.is_(False)))
            if device.id not in busy and repository.is_online(device, now, settings.offline_after_s)
        ]
        # A device whose agent still reports a trial (one cancelled mid-run, say) is busy
        # too, unless that trial's result is in: the heartbeat saying so may be seconds away.
        done = finished_by_agent(session, {d.current_trial for d in candidates if d.current_trial})
        idle = [d.id for d in candidates if d.current_trial is None or d.current_trial in done]
    for device_id in idle:
        with sessions.begin() as session:
            trial = repository.next_pending(session, device_id)
            if trial is None:
                continue
            repository.mark_dispatched(session, trial, trial.device.boot_id)
            spec = trial_spec(trial, settings)
        # Committed before sending: if sending fails, the start timeout sends it again.
        try:
            send_trial(app, spec)
            sent += 1
        except Exception as exc:  # broker unreachable: back to pending, tried next round
            log.warning("could not send trial %s: %s", spec.trial_id, exc)
            with sessions.begin() as session:
                trial = session.get(Trial, spec.trial_id)
                if trial is not None and trial.state == QUEUED:
                    trial.state, trial.note = PENDING, f"broker unreachable: {exc}"
    return sent
