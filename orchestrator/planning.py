"""Plans and submits campaigns against what the store holds (devices, models)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from agents.contract import InputSpec
from orchestrator.campaigns.matrix import ArtifactInfo, DeviceInfo, Plan, expand
from orchestrator.campaigns.spec import CampaignSpec
from orchestrator.settings import Settings
from orchestrator.store import repository
from orchestrator.store.models import Campaign, Device, Model, ModelCard, utcnow


def device_infos(session: Session) -> list[DeviceInfo]:
    now, offline_after = utcnow(), Settings().offline_after_s
    infos = []
    for device in session.scalars(select(Device).where(Device.retired.is_(False))):
        found = (device.facts or {}).get("runtimes", [])
        runtimes = {r["name"]: list(r.get("devices", [])) for r in found}
        precisions = {r["name"]: dict(r["precisions"]) for r in found if r.get("precisions")}
        formats = {r["name"]: dict(r["formats"]) for r in found if r.get("formats")}
        options = {r["name"]: list(r["options"]) for r in found if r.get("options") is not None}
        infos.append(
            DeviceInfo(
                name=device.name,
                device_class=device.device_class,
                tags=tuple(device.tags or ()),
                runtimes=runtimes,
                precisions=precisions,
                formats=formats,
                options=options,
                online=repository.is_online(device, now, offline_after),
                has_loadgen=(
                    bool((device.facts or {})["loadgen"])
                    if "loadgen" in (device.facts or {})
                    else None
                ),
            )
        )
    return infos


def fixed_batch(inputs: list[dict]) -> tuple[int | None, ...] | None:
    """The input shape that fixes the batch when no input has a dynamic batch axis (the
    first input's), else None: such a model runs at one batch size only."""
    specs = [InputSpec.of(node) for node in inputs]
    if not specs or any(s.batch_axis is not None and s.shape[s.batch_axis] is None for s in specs):
        return None
    return tuple(specs[0].shape)


def sweepable(inputs: list[dict]) -> tuple:
    """(name, shape, batch axis, open axes) of each input, for checking a shape sweep."""
    rows = []
    for node in inputs:
        spec = InputSpec.of(node)
        rows.append(
            (spec.name, tuple(spec.shape), spec.batch_axis, tuple(node.get("open_axes", ())))
        )
    return tuple(rows)


def artifact_infos(session: Session) -> list[ArtifactInfo]:
    cards = {c.name: c for c in session.scalars(select(ModelCard))}
    infos = []
    for m in session.scalars(select(Model)):
        card = cards.get(m.name)
        infos.append(
            ArtifactInfo(
                model_id=m.id,
                name=m.name,
                format=m.format,
                precision=m.precision,
                family=card.family if card else None,
                input_size=card.input_size if card else None,
                fixed_batch=fixed_batch(m.inputs or []),
                inputs=sweepable(m.inputs or []),
                refused_by=tuple(
                    sorted(((card.recipe or {}) if card else {}).get("refused_by", {}).items())
                ),
                fixed_by=(m.recipe or {}).get("fixed_by"),
            )
        )
    return infos


def plan(session: Session, spec: CampaignSpec) -> Plan:
    return expand(spec, device_infos(session), artifact_infos(session))


def submit(session: Session, spec: CampaignSpec) -> tuple[Campaign, Plan]:
    """Write the campaign and its trials (pending); the controller's scheduler sends them."""
    planned = plan(session, spec)
    return repository.create_campaign(session, spec, planned), planned
