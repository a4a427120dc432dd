"""Read-only queries of operator profiles: one trial's, and the trials that have one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.store.models import Device, Model, ProfileOpType, Result, ResultProfile, Trial
from orchestrator.store.profiles import nodes_of


def trial_profile(session: Session, trial_id: str) -> dict[str, Any] | None:
    """A trial's profile: its pass, its op types, its nodes, and the trial's measured mean
    beside them (what the profile's total is checked against); None where it has none."""
    row = session.execute(
        select(Trial, Result, ResultProfile, Device.name, Model.name)
        .join(Result, Result.trial_id == Trial.id)
        .join(ResultProfile, ResultProfile.result_id == Result.id)
        .join(Device, Trial.device_id == Device.id)
        .join(Model, Trial.model_id == Model.id)
        .where(Trial.id == trial_id)
    ).first()
    if row is None:
        return None
    trial, result, profile, device, model = row
    op_types = session.scalars(
        select(ProfileOpType).where(ProfileOpType.result_id == result.id).order_by(ProfileOpType.id)
    )
    return {
        "trial_id": trial.id,
        "label": f"{device} · {model} · {trial.runtime}/{trial.requested_device} · "
        f"{trial.precision} · batch {trial.batch_size}",
        "device": device, "model": model, "runtime": trial.runtime,
        "precision": trial.precision, "batch_size": trial.batch_size,
        "measured_mean_ms": result.mean_ms,
        "method": profile.method, "requested_unit": profile.requested_unit,
        "queries": profile.queries, "wall_ms": profile.wall_ms, "total_ms": profile.total_ms,
        "note": profile.note,
        "op_types": [
            {column: getattr(op, column) for column in OP_TYPE_COLUMNS} for op in op_types
        ],
        "nodes": nodes_of(profile),
    }  # fmt: skip


OP_TYPE_COLUMNS = (
    "op_type", "unit", "precision", "nodes", "calls", "time_ms", "share", "fallback_nodes",
)  # fmt: skip


def profiled_trials(
    session: Session, limit: int = 500, campaign_id: int | None = None
) -> list[dict[str, Any]]:
    """The latest trials that have a profile, newest first, labelled for a picker."""
    query = (
        select(Trial.id, Trial.runtime, Trial.requested_device, Trial.precision,
               Trial.batch_size, Device.name, Model.name, Result.mean_ms, ResultProfile.total_ms)
        .join(Result, Result.trial_id == Trial.id)
        .join(ResultProfile, ResultProfile.result_id == Result.id)
        .join(Device, Trial.device_id == Device.id)
        .join(Model, Trial.model_id == Model.id)
        .order_by(Result.id.desc())
        .limit(limit)
    )  # fmt: skip
    if campaign_id is not None:
        query = query.where(Trial.campaign_id == campaign_id)
    return [
        {"trial_id": t, "label": f"{device} · {model} · {runtime}/{unit} · {precision} · "
         f"batch {batch} · {t[:8]}", "measured_mean_ms": mean, "profile_total_ms": total,
         "model": model, "runtime": runtime, "precision": precision, "batch_size": batch}
        for t, runtime, unit, precision, batch, device, model, mean, total in session.execute(query)
    ]  # fmt: skip
