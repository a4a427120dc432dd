"""Read-only queries for the CLI and the dashboard (the dashboard's own pages: `dashboard`).
Nothing here writes."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from agents.contract import metrics
from orchestrator import configurations
from orchestrator.store.models import (
    TERMINAL,
    Campaign,
    Device,
    Model,
    Result,
    ResultProfile,
    Trial,
    TrialState,
    utcnow,
)
from orchestrator.store.models import CampaignState as CampaignState  # for the dashboard
from orchestrator.store.repository import as_utc, is_online
from orchestrator.store.session import session_factory

# The fields `results export` writes, in order (DESIGN.md, user-facing interfaces): what
# identifies the run, every declared metric (agents.contract.metrics), then how it was set up.
EXPORT_FIELDS = [
    "trial_id", "campaign", "campaign_id", "device", "device_class", "model", "runtime",
    "requested_device", "precision", "batch_size", "scenario", "repeat", "status", "error",
    "attempt", *(m.name for m in metrics.METRICS), "profile_method", "profile_ops_ms",
    "profile_fallback_ops", "scenario_params", "scenario_report", "runtime_options",
    "input_shapes", "finished_at",
]  # fmt: skip
# What a result row holds beside its metrics.
RESULT_FIELDS = (*(m.name for m in metrics.METRICS), "scenario_report")


def reader(url: str) -> sessionmaker[Session]:
    """Sessions for the functions below: what the dashboard opens, nothing else."""
    return session_factory(url)


def _accelerator_names(facts: dict[str, Any]) -> str:
    names = []
    for found in facts.get("accelerators") or []:
        name = str(found.get("kind"))
        speed = found.get("usb_speed_mbps")
        names.append(f"{name} (USB {found.get('usb_generation')})" if speed else name)
    return ", ".join(names)


def _runtime_names(facts: dict[str, Any]) -> list[str]:
    return [f"{r.get('name')} {r.get('version')}" for r in facts.get("runtimes", [])]


def devices_overview(
    session: Session,
    offline_after_s: float,
    include_retired: bool = False,
    name: str | None = None,
) -> list[dict[str, Any]]:
    now = utcnow()
    done = select(Trial.device_id, func.count()).where(Trial.state == TrialState.DONE)
    query = select(Device).order_by(Device.name)
    if name is not None:
        done = done.join(Device, Trial.device_id == Device.id).where(Device.name == name)
        query = query.where(Device.name == name)
    counts = dict(session.execute(done.group_by(Trial.device_id)).all())
    rows = []
    if not include_retired:
        query = query.where(Device.retired.is_(False))
    for device in session.scalars(query):
        facts = device.facts or {}
        rows.append(
            {
                "name": device.name,
                "class": device.device_class,
                "tags": ", ".join(device.tags or []),
                "status": "retired"
                if device.retired
                else ("online" if is_online(device, now, offline_after_s) else "offline"),
                "last_heartbeat": as_utc(device.last_heartbeat_at),
                "cpu": facts.get("cpu_model"),
                "arch": facts.get("arch"),
                "cores": facts.get("logical_cores"),
                "memory_mb": facts.get("memory_mb"),
                "runtimes": ", ".join(_runtime_names(facts)),
                "accelerators": _accelerator_names(facts),
                "trials_done": counts.get(device.id, 0),
            }
        )
    return rows


def device_detail(session: Session, name: str, offline_after_s: float) -> dict[str, Any] | None:
    device = session.scalar(select(Device).where(Device.name == name))
    if device is None:
        return None
    [overview] = devices_overview(session, offline_after_s, include_retired=True, name=name)
    return {
        **overview,
        "registered_at": as_utc(device.registered_at),
        "agent_version": device.agent_version,
        "current_trial": device.current_trial,
        "facts": device.facts,
    }


def campaigns_overview(session: Session, campaign_id: int | None = None) -> list[dict[str, Any]]:
    """Every campaign (or just one) with its trials counted by state."""
    tally = select(Trial.campaign_id, Trial.state, func.count())
    query = select(Campaign).order_by(Campaign.id.desc())
    if campaign_id is not None:
        tally = tally.where(Trial.campaign_id == campaign_id)
        query = query.where(Campaign.id == campaign_id)
    counts: dict[int, Counter] = {}
    for cid, state, number in session.execute(tally.group_by(Trial.campaign_id, Trial.state)):
        counts.setdefault(cid, Counter())[state] = number
    rows = []
    for campaign in session.scalars(query):
        states = counts.get(campaign.id, Counter())
        total = sum(states.values())
        rows.append(
            {
                "id": campaign.id,
                "name": campaign.name,
                "state": campaign.state,
                "trials": total,
                "finished": sum(states[s] for s in TERMINAL),
                **{s.value: states[s] for s in TrialState},
                "skipped": len(campaign.skipped or []),
                "created_at": as_utc(campaign.created_at),
                "finished_at": as_utc(campaign.finished_at),
            }
        )
    return rows


def campaign_progress(session: Session, campaign_id: int) -> dict[str, Any] | None:
    """One campaign's counts: what `campaign submit --wait` polls twice a second."""
    rows = campaigns_overview(session, campaign_id)
    return rows[0] if rows else None


def campaign_trials(
    session: Session, campaign_id: int, offline_after_s: float
) -> list[dict[str, Any]]:
    now = utcnow()
    rows = []
    query = (
        select(Trial, Device, Model)
        .join(Device, Trial.device_id == Device.id)
        .join(Model, Trial.model_id == Model.id)
        .where(Trial.campaign_id == campaign_id)
        .order_by(Trial.seq)
    )
    for trial, device, model in session.execute(query):
        note = trial.note
        if trial.state == TrialState.PENDING and not is_online(device, now, offline_after_s):
            note = f"waiting for device {device.name} to come online" + (
                f"; {note}" if note else ""
            )
        rows.append(
            {
                "trial_id": trial.id,
                "device": device.name,
                "model": model.name,
                "runtime": trial.runtime,
                "batch_size": trial.batch_size,
                "state": trial.state,
                "attempt": trial.attempt,
                "error": trial.error,
                "note": note,
            }
        )
    return rows


def campaign_skipped(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    campaign = session.get(Campaign, campaign_id)
    return list(campaign.skipped or []) if campaign else []


# Columns every run of one configuration shares (configurations.KEY_FIELDS has the rest).
RUN_COLUMNS = ("campaign_id", "device_id", "model_id", "runtime", "precision", "batch_size")


def result_rows(
    session: Session,
    campaign_id: int | None = None,
    device: str | None = None,
    model: str | None = None,
    only_done: bool = False,
    trial_id: str | None = None,
    runs_like: Trial | None = None,
) -> list[dict[str, Any]]:
    """One row per trial with every export field; metrics are None when not measured.
    `runs_like`: only trials that may be runs of that trial's configuration."""
    query = (
        select(Trial, Campaign, Device, Model, Result, ResultProfile.method, ResultProfile.total_ms)
        .join(Campaign, Trial.campaign_id == Campaign.id)
        .join(Device, Trial.device_id == Device.id)
        .join(Model, Trial.model_id == Model.id)
        .outerjoin(Result, Result.trial_id == Trial.id)
        .outerjoin(ResultProfile, ResultProfile.result_id == Result.id)
        .order_by(Trial.campaign_id, Trial.seq)
    )
    if campaign_id is not None:
        query = query.where(Trial.campaign_id == campaign_id)
    if device is not None:
        query = query.where(Device.name == device)
    if model is not None:
        query = query.where(Model.name == model)
    if only_done:
        query = query.where(Result.id.is_not(None))
    if trial_id is not None:
        query = query.where(Trial.id == trial_id)
    if runs_like is not None:  # the trial's campaign, device, model, runtime, precision, batch
        query = query.where(*(getattr(Trial, c) == getattr(runs_like, c) for c in RUN_COLUMNS))
    rows = []
    for trial, campaign, dev, mdl, result, method, ops_ms in session.execute(query):
        row: dict[str, Any] = dict.fromkeys(EXPORT_FIELDS)
        row.update(
            trial_id=trial.id,
            campaign=campaign.name,
            campaign_id=campaign.id,
            device=dev.name,
            device_class=dev.device_class,
            model=mdl.name,
            runtime=trial.runtime,
            requested_device=trial.requested_device,
            runtime_options=trial.runtime_options or {},
            precision=trial.precision,
            batch_size=trial.batch_size,
            scenario=trial.scenario,
            scenario_params=trial.scenario_params,
            input_shapes=trial.input_shapes,
            repeat=trial.repeat,
            status=trial.state,
            error=trial.error,
            attempt=trial.attempt,
            finished_at=_iso(as_utc(trial.finished_at)),
        )
        if result is not None:
            for name in RESULT_FIELDS:
                row[name] = getattr(result, name)
        if method is not None:  # its operator profile (results profile shows it whole)
            fell_back = (result.placement or {}).get("fallback_ops")
            row.update(profile_method=method, profile_ops_ms=ops_ms, profile_fallback_ops=fell_back)
        rows.append(row)
    return rows


def configuration_runs(session: Session, trial_id: str) -> list[dict[str, Any]]:
    """Result rows of every run of the configuration `trial_id` is a run of (empty when
    there is no such trial): what `results compare` and the Diff page judge."""
    trial = session.get(Trial, trial_id)
    if trial is None:
        return []
    # Narrowed in SQL by the stored columns (not the campaign's every row: 2,000 result
    # rows with their JSON took 0.5 s on PostgreSQL), then matched on the whole key.
    return configurations.runs_of(result_rows(session, runs_like=trial), trial_id)


def result_samples(session: Session, trial_id: str) -> list[int]:
    result = session.scalar(select(Result).where(Result.trial_id == trial_id))
    return list(result.samples.samples_ns) if result is not None and result.samples else []


def trials_matching(session: Session, prefix: str) -> list[dict[str, Any]]:
    """Trials whose id starts with `prefix` (users paste the first characters)."""
    query = (
        select(Trial.id, Trial.batch_size, Trial.runtime, Device.name, Model.name)
        .join(Device, Trial.device_id == Device.id)
        .join(Model, Trial.model_id == Model.id)
        .where(Trial.id.startswith(prefix.lower(), autoescape=True))
        .limit(10)
    )
    return [
        {"trial_id": t, "label": f"{device} · {model} · {runtime} · batch {batch}"}
        for t, batch, runtime, device, model in session.execute(query)
    ]


def latest_campaign_id(session: Session) -> int | None:
    return session.scalar(select(func.max(Campaign.id)))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
