"""Writes to the store. Every state change of a trial goes through here."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload, selectinload

from agents.contract import Heartbeat, Registration, TrialResult, TrialStarted
from orchestrator import configurations
from orchestrator.campaigns.matrix import Plan
from orchestrator.campaigns.spec import CampaignSpec
from orchestrator.store.models import (
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    QUEUED,
    RUNNING,
    TERMINAL,
    Campaign,
    CampaignState,
    Device,
    DeviceCredential,
    EnrollmentToken,
    Model,
    ModelCard,
    RejectedMessage,
    Result,
    ResultSamples,
    Trial,
    Word,
    utcnow,
)
from orchestrator.store.profiles import stored_profile

MAX_ATTEMPTS = 5


class StoreError(ValueError):
    """A request the store refuses, with the reason."""


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is UTC."""
    if moment is not None and moment.tzinfo is None:
        from datetime import timezone

        return moment.replace(tzinfo=timezone.utc)
    return moment


# -- devices -------------------------------------------------------------------------


def register_device(session: Session, message: Registration) -> Device:
    device = session.scalar(select(Device).where(Device.name == message.device))
    if device is not None and device.retired:
        raise StoreError(f"device {message.device} is retired; registration refused")
    newer = device.registration_sent_at if device is not None else None
    if newer is not None and message.sent_at < newer:
        # An older registration (of an earlier agent process, or this one's replayed) would
        # point the device back at a process that no longer runs.
        raise Rejected(
            "replay",
            f"registration of {message.device} sent at {message.sent_at:.3f}, before the one "
            f"taken ({newer:.3f}); ignored",
        )
    if device is None:
        device = Device(name=message.device)
        session.add(device)
    device.registration_sent_at = message.sent_at
    device.device_class = message.facts.device_class
    device.tags = list(message.tags)
    device.facts = message.facts.model_dump(mode="json")
    device.agent_version = message.agent_version
    if device.boot_id != message.boot_id:
        device.heartbeat_sent_at = None
    device.boot_id = message.boot_id
    device.last_heartbeat_at = utcnow()
    device.current_trial = None
    session.flush()
    return device


def devices_named(session: Session, names: set[str]) -> dict[str, Device]:
    """Several devices by name, in one query (a batch of heartbeats), row-locked in id order:
    two ingest loops with heartbeats of one device take turns (PostgreSQL), so the newer
    one is never overwritten by an older one checked against what the other had not yet
    committed."""
    query = (
        select(Device).where(Device.name.in_(sorted(names))).order_by(Device.id).with_for_update()
    )
    return {device.name: device for device in session.scalars(query)}


def record_heartbeat(
    session: Session, message: Heartbeat, known: dict[str, Device] | None = None
) -> Device:
    """`known`: the devices devices_named loaded, when the caller loaded a batch of them."""
    if known is not None:
        device = known.get(message.device)
    else:
        device = session.scalar(
            select(Device).where(Device.name == message.device).with_for_update()
        )
    if device is None or device.retired:
        raise StoreError(f"heartbeat from unregistered or retired device {message.device}")
    if device.boot_id != message.boot_id:
        # A heartbeat that arrives after a new registration of the same device is stale.
        raise StoreError(f"heartbeat from an old agent process of {message.device}; ignored")
    newest = max(device.heartbeat_sent_at or 0.0, device.registration_sent_at or 0.0)
    if message.sent_at == device.heartbeat_sent_at:
        return device  # the same heartbeat delivered again
    if message.sent_at < newest:
        raise Rejected(
            "replay",
            f"heartbeat of {message.device} sent at {message.sent_at:.3f}, before the newest "
            f"taken ({newest:.3f})",
        )
    device.heartbeat_sent_at = message.sent_at
    device.last_heartbeat_at = utcnow()
    device.current_trial = message.current_trial
    return device


def retire_device(session: Session, name: str) -> Device:
    device = session.scalar(select(Device).where(Device.name == name))
    if device is None:
        raise StoreError(f"no device named {name}")
    device.retired = True
    revoke_credentials(session, device)
    now = utcnow()
    touched = set()
    for trial in session.scalars(
        select(Trial).where(Trial.device_id == device.id, Trial.state.not_in(TERMINAL))
    ):
        trial.state, trial.error, trial.finished_at = CANCELLED, f"device {name} was retired", now
        touched.add(trial.campaign_id)
    for campaign_id in touched:
        settle_campaign(session, campaign_id)
    return device


# -- models --------------------------------------------------------------------------


def upsert_model(
    session: Session,
    *,
    name: str,
    fmt: str,
    precision: str,
    sha256: str,
    size: int,
    path: str,
    inputs: list[dict[str, Any]],
    recipe: dict[str, Any],
) -> Model:
    model = session.scalar(
        select(Model).where(Model.name == name, Model.format == fmt, Model.precision == precision)
    )
    if model is None:
        model = Model(name=name, format=fmt, precision=precision)
        session.add(model)
    model.sha256, model.size, model.path = sha256, size, path
    model.inputs, model.recipe = inputs, recipe
    session.flush()
    return model


def upsert_card(session: Session, card: dict[str, Any]) -> ModelCard:
    """Create or replace the card of a model variant (keyed by its name)."""
    row = session.scalar(select(ModelCard).where(ModelCard.name == card["name"]))
    if row is None:
        row = ModelCard(name=card["name"])
        session.add(row)
    for key in (
        "family", "input_size", "version", "task", "layout", "preprocessing", "inputs",
        "source", "license", "data", "recipe",
    ):  # fmt: skip
        if key in card:
            setattr(row, key, card[key])
    session.flush()
    return row


log = logging.getLogger(__name__)


class Outcome(Word):
    """What applying one message did (orchestrator.ingest returns it for each message)."""

    REGISTERED = "registered"  # a registration: the device is (re-)registered
    HEARTBEAT = "heartbeat"
    RUNNING = "running"  # a start: the trial is running
    STALE = "stale"  # a start for a finished trial or a superseded attempt: nothing changed
    STORED = "stored"  # a result stored
    FAILED = "failed"  # a failure report: the trial failed, with its reason
    DUPLICATE = "duplicate"  # a result already stored (a redelivery)
    IGNORED = "ignored"  # a result for a trial cancelled or failed meanwhile
    REJECTED = "rejected"  # refused for a security reason or as malformed (counted)
    REFUSED = "refused"  # refused by the store's rules (an unknown device, a stale agent)
    ERROR = "error"  # did not fit the store; nothing written


# A batch with any of these may have freed a device or finished a campaign.
WAKES_SCHEDULER = frozenset((Outcome.REGISTERED, Outcome.STORED, Outcome.FAILED))


# -- campaigns -----------------------------------------------------------------------


def create_campaign(session: Session, spec: CampaignSpec, plan: Plan) -> Campaign:
    devices = {
        d.name: d for d in session.scalars(select(Device).where(Device.name.in_(plan.devices)))
    }
    campaign = Campaign(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        state=CampaignState.RUNNING,
        skipped=plan.skipped,
    )
    session.add(campaign)
    session.flush()
    policy = spec.policy.measurement().model_dump(mode="json")
    for seq, planned in enumerate(plan.trials):
        session.add(
            Trial(
                id=uuid.uuid4().hex,
                campaign_id=campaign.id,
                device_id=devices[planned.device].id,
                model_id=planned.model_id,
                runtime=planned.runtime,
                requested_device=planned.requested_device,
                runtime_options=planned.runtime_options or None,
                precision=planned.precision,
                batch_size=planned.batch_size,
                scenario=planned.scenario,
                scenario_params=planned.scenario_params,
                input_shapes=planned.input_shapes,
                config_key=configurations.config_key(
                    planned.scenario_params, planned.runtime_options, planned.input_shapes
                ),
                seq=seq,
                repeat=planned.repeat,
                policy=policy,
                timeout_s=planned.timeout_s,
                state=PENDING,
                attempt=0,
            )
        )
    session.flush()
    return campaign


def cancel_campaign(session: Session, campaign_id: int) -> int:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise StoreError(f"no campaign with id {campaign_id}")
    result = session.execute(
        update(Trial)
        .where(Trial.campaign_id == campaign_id, Trial.state.not_in(TERMINAL))
        .values(state=CANCELLED, error="campaign cancelled", finished_at=utcnow())
    )
    settle_campaign(session, campaign_id)
    return result.rowcount


OPEN_STATES = (PENDING, QUEUED, RUNNING)


def settle_campaign(session: Session, campaign_id: int) -> None:
    """Close a campaign once every trial is terminal."""
    session.flush()
    # Any one open trial is enough to know: an index seek, not a count over the campaign.
    open_trial = session.scalar(
        select(Trial.id)
        .where(Trial.campaign_id == campaign_id, Trial.state.in_(OPEN_STATES))
        .limit(1)
    )
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or open_trial is not None or campaign.finished_at is not None:
        return
    states = set(session.scalars(select(Trial.state).where(Trial.campaign_id == campaign_id)))
    campaign.state = (
        CampaignState.CANCELLED
        if CANCELLED in states
        else (CampaignState.DONE if states <= {DONE} else CampaignState.FINISHED_WITH_FAILURES)
    )
    campaign.finished_at = utcnow()


# -- trial lifecycle -----------------------------------------------------------------


def mark_dispatched(session: Session, trial: Trial, boot_id: str | None) -> None:
    trial.attempt += 1
    trial.state = QUEUED
    trial.boot_id = boot_id
    trial.dispatched_at = utcnow()
    trial.started_at = None
    trial.note = None


def requeue(session: Session, trial: Trial, note: str) -> None:
    """Put a lost trial back to pending, or fail it once it has been lost too often."""
    if trial.attempt >= MAX_ATTEMPTS:
        trial.state, trial.finished_at = FAILED, utcnow()
        trial.error = f"gave up after {trial.attempt} attempts; last: {note}"
        settle_campaign(session, trial.campaign_id)
        return
    trial.state = PENDING
    trial.note = note


def lock_trials(session: Session, trial_ids: set[int]) -> dict[int, Trial]:
    """Row-lock several trials at once (in id order), with their device and result loaded:
    what record_started and record_result need, in two statements instead of a few each."""
    query = (
        select(Trial)
        .where(Trial.id.in_(sorted(trial_ids)))
        .order_by(Trial.id)
        .options(joinedload(Trial.device), selectinload(Trial.result))
        .with_for_update(of=Trial)
    )
    return {trial.id: trial for trial in session.scalars(query)}


def _locked_trial(session: Session, trial_id: int, locked: dict[int, Trial] | None) -> Trial | None:
    if locked is not None:
        return locked.get(trial_id)
    return session.get(Trial, trial_id, with_for_update=True)


def record_started(
    session: Session, message: TrialStarted, locked: dict[int, Trial] | None = None
) -> Outcome:
    """`locked`: the trials lock_trials returned, when the caller locked a batch of them."""
    trial = _locked_trial(session, message.trial_id, locked)
    if trial is None:
        raise Rejected("not_assigned", f"start of unknown trial {message.trial_id}")
    if trial.device.name != message.device:
        raise Rejected("not_assigned", f"trial {trial.id} is not assigned to {message.device}")
    if trial.state in TERMINAL or message.attempt != trial.attempt:
        return Outcome.STALE
    trial.state, trial.started_at, trial.boot_id = RUNNING, utcnow(), message.boot_id
    return Outcome.RUNNING


def record_result(
    session: Session,
    message: TrialResult,
    signature: str | None = None,
    locked: dict[int, Trial] | None = None,
    settle: bool = True,
) -> Outcome:
    """Store a result once. Returns what happened: stored, failed, duplicate or ignored.

    `signature` is the message's; once a result finished the trial, the same signature again
    is a redelivery (duplicate) and another one for that attempt a replay (Rejected).
    `locked`: as for record_started. `settle=False` leaves settle_campaign to the caller
    (a batch settles each campaign once)."""
    # Row lock: a concurrent cancel or dispatch waits, and we see its outcome (PostgreSQL).
    trial = _locked_trial(session, message.trial_id, locked)
    _check_result_sender(trial, message, signature)
    if trial.result is not None:
        if trial.state != DONE:  # measured once already: that measurement stands
            trial.state, trial.error = DONE, None
            if settle:
                settle_campaign(session, trial.campaign_id)
        return Outcome.DUPLICATE
    if trial.state in TERMINAL:  # cancelled, or failed at its lease: that stands
        log.info("result for trial %s ignored: it is %s", trial.id, trial.state)
        return Outcome.IGNORED
    trial.finished_at = utcnow()
    trial.result_signature = signature
    if message.status == "failed" or message.summary is None:
        trial.state = FAILED
        trial.error = message.error or "the agent reported a failure without a reason"
        if settle:
            settle_campaign(session, trial.campaign_id)
        return Outcome.FAILED
    result = Result(
        trial=trial,
        attempt=message.attempt,
        boot_id=message.boot_id,
        **message.summary.model_dump(),
        **measured_fields(message),
    )
    # Inserted at the next flush, with the samples: a batch inserts all its rows at once.
    result.samples = ResultSamples(samples_ns=list(message.samples_ns))
    if message.profile is not None:
        result.profile = stored_profile(message.profile)
    session.add(result)
    trial.state, trial.error = DONE, None
    if message.unstable or message.throttled:
        add_run(session, trial, "throttled" if message.throttled else "unstable")
    if settle:
        settle_campaign(session, trial.campaign_id)
    return Outcome.STORED


# What a result message says about which trial and agent it is (stored on the trial, or
# above), not a figure of the measurement: every other field of it is a Result column.
NOT_MEASURED = {
    "trial_id", "attempt", "device", "boot_id", "status", "error", "summary", "samples_ns",
    "sent_at", "profile",
}  # fmt: skip


def measured_fields(message: TrialResult) -> dict[str, Any]:
    """The message's figures, each stored in the Result column of its name: a figure added
    to TrialResult needs its column (and migration), no copy here."""
    return {
        name: getattr(message, name)
        for name in type(message).model_fields
        if name not in NOT_MEASURED
    }


def _check_result_sender(trial: Trial | None, message: TrialResult, signature: str | None) -> None:
    """Refuse a result for a trial that was not sent to its sender, for an attempt never
    sent, a different result for an attempt that has one (a replay), or one from another
    agent process than the attempt went to."""
    if trial is None:
        raise Rejected("not_assigned", f"result for unknown trial {message.trial_id}")
    if trial.device.name != message.device:
        raise Rejected(
            "not_assigned",
            f"result for trial {trial.id} from {message.device}, assigned to {trial.device.name}",
        )
    if message.attempt < 1 or message.attempt > trial.attempt:
        raise Rejected(
            "not_assigned", f"result for attempt {message.attempt} of trial {trial.id}, never sent"
        )
    if trial.result_signature is not None and signature is not None:
        finished = trial.result.attempt if trial.result is not None else trial.attempt
        if signature != trial.result_signature and message.attempt == finished:
            raise Rejected(
                "replay",
                f"a different result for trial {trial.id} attempt {message.attempt}, "
                "which already has one",
            )
    if message.attempt == trial.attempt and trial.boot_id and message.boot_id != trial.boot_id:
        raise StoreError(
            f"result for trial {trial.id} from agent process {message.boot_id[:8]}, "
            f"but attempt {trial.attempt} was sent to {trial.boot_id[:8]}"
        )


def add_run(session: Session, trial: Trial, reason: str) -> Trial | None:
    """One more run of `trial`'s configuration, after an unstable or throttled run, while the
    configuration has had fewer than policy.max_reruns added. No run is replaced or hidden:
    the configuration's figures are computed over all of them."""
    budget = int((trial.policy or {}).get("max_reruns") or 0)
    if budget <= 0:
        return None
    same = (
        select(Trial)
        .where(Trial.campaign_id == trial.campaign_id, Trial.device_id == trial.device_id)
        .where(Trial.model_id == trial.model_id, Trial.runtime == trial.runtime)
        .where(Trial.requested_device == trial.requested_device)
        .where(Trial.precision == trial.precision, Trial.batch_size == trial.batch_size)
        .where(Trial.scenario == trial.scenario)
    )
    siblings = [
        t
        for t in session.scalars(same)
        if (t.scenario_params or {}) == (trial.scenario_params or {})
        and (t.runtime_options or {}) == (trial.runtime_options or {})
        and (t.input_shapes or {}) == (trial.input_shapes or {})
    ]
    if len(siblings) >= CampaignSpec.model_validate(trial.campaign.spec).runs + budget:
        return None
    last_seq = session.scalar(
        select(func.max(Trial.seq)).where(Trial.campaign_id == trial.campaign_id)
    )
    added = Trial(
        id=uuid.uuid4().hex,
        campaign_id=trial.campaign_id,
        device_id=trial.device_id,
        model_id=trial.model_id,
        runtime=trial.runtime,
        requested_device=trial.requested_device,
        runtime_options=trial.runtime_options,
        precision=trial.precision,
        batch_size=trial.batch_size,
        scenario=trial.scenario,
        scenario_params=trial.scenario_params,
        input_shapes=trial.input_shapes,
        config_key=trial.config_key,
        seq=(last_seq or 0) + 1,
        repeat=max(t.repeat for t in siblings) + 1,
        policy=trial.policy,
        timeout_s=trial.timeout_s,
        state=PENDING,
        attempt=0,
        note=f"a run added after run {trial.repeat} was {reason}",
    )
    session.add(added)
    return added


def open_trials(session: Session) -> list[Trial]:
    """Row-locked in id order, as ingest locks them (ingest_workers: no deadlock between
    the scheduler and an ingest loop in another process)."""
    query = (
        select(Trial).where(Trial.state.in_((QUEUED, RUNNING))).order_by(Trial.id).with_for_update()
    )
    return list(session.scalars(query))


def next_pending(session: Session, device_id: int) -> Trial | None:
    return session.scalar(
        select(Trial)
        .where(Trial.device_id == device_id, Trial.state == PENDING)
        .order_by(Trial.campaign_id, Trial.seq)
        .limit(1)
        .with_for_update()
    )


def is_online(device: Device, now: datetime, offline_after_s: float) -> bool:
    seen = as_utc(device.last_heartbeat_at)
    return bool(seen and not device.retired and now - seen <= timedelta(seconds=offline_after_s))


# -- credentials (docs/SECURITY.md) --------------------------------------------------


class Rejected(StoreError):
    """A message refused for a security reason; counted in rejected_messages.

    ``reason`` is one of: unsigned, bad_signature, unknown_device, revoked,
    enrollment_refused, not_assigned, replay."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def add_token(
    session: Session,
    token_id: str,
    secret_hash: str,
    *,
    expires_at: datetime | None = None,
    name_pattern: str | None = None,
    local: bool = False,
) -> EnrollmentToken:
    token = EnrollmentToken(
        id=token_id,
        secret_hash=secret_hash,
        expires_at=expires_at,
        name_pattern=name_pattern,
        local=local,
    )
    session.add(token)
    session.flush()
    return token


def list_tokens(session: Session) -> list[EnrollmentToken]:
    return list(session.scalars(select(EnrollmentToken).order_by(EnrollmentToken.created_at)))


def revoke_local_tokens(session: Session) -> None:
    """A starting controller replaces its local token; keys derived from it stay valid."""
    session.execute(
        update(EnrollmentToken)
        .where(EnrollmentToken.local.is_(True), EnrollmentToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def active_credential(session: Session, device_name: str) -> DeviceCredential | None:
    return session.scalar(
        select(DeviceCredential)
        .join(Device, Device.id == DeviceCredential.device_id)
        .where(Device.name == device_name, DeviceCredential.revoked_at.is_(None))
    )


def active_credentials(session: Session, device_names: set[str]) -> dict[str, DeviceCredential]:
    """active_credential of several devices in one query; devices without one are absent."""
    rows = session.execute(
        select(Device.name, DeviceCredential)
        .join(Device, Device.id == DeviceCredential.device_id)
        .where(Device.name.in_(sorted(device_names)), DeviceCredential.revoked_at.is_(None))
    )
    return {name: credential for name, credential in rows}


def had_credentials(session: Session, device_name: str) -> bool:
    found = session.scalar(
        select(func.count())
        .select_from(DeviceCredential)
        .join(Device, Device.id == DeviceCredential.device_id)
        .where(Device.name == device_name)
    )
    return bool(found)


def enroll(session: Session, token: EnrollmentToken, device_name: str, key: bytes) -> None:
    """Give `device_name` the key derived from `token`, replacing any key it had; the token
    is spent unless it is the controller's local one."""
    device = session.scalar(select(Device).where(Device.name == device_name))
    if device is None:  # the registration that enrolls it fills in the rest
        device = Device(name=device_name, device_class="unknown")
        session.add(device)
        session.flush()
    revoke_credentials(session, device)
    now = utcnow()
    session.add(DeviceCredential(device_id=device.id, token_id=token.id, key=key.hex()))
    if not token.local:
        token.used_at, token.used_by = now, device_name
    session.flush()


def revoke_credentials(session: Session, device: Device) -> int:
    result = session.execute(
        update(DeviceCredential)
        .where(DeviceCredential.device_id == device.id, DeviceCredential.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount


def record_rejection(
    session: Session, device: str | None, kind: str | None, reason: str, detail: str
) -> None:
    session.add(
        RejectedMessage(
            device=(device or None) and device[:64],
            kind=kind and kind[:32],
            reason=reason,
            detail=detail[:2000],
        )
    )


def rejection_counts(session: Session, device: str) -> dict[str, int]:
    rows = session.execute(
        select(RejectedMessage.reason, func.count())
        .where(RejectedMessage.device == device)
        .group_by(RejectedMessage.reason)
    )
    return {reason: count for reason, count in rows}
