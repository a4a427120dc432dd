"""Read-only queries over the model registry: cards and the artifacts of each model."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.store.models import Model, ModelCard


def _artifact(row: Model) -> dict[str, Any]:
    return {
        "name": row.name,
        "format": row.format,
        "precision": row.precision,
        "sha256": row.sha256,
        "bytes": row.size,
        "inputs": row.inputs,
        "recipe": row.recipe,
    }


def artifacts(session: Session) -> list[dict[str, Any]]:
    """Every artifact, with its model's task, ordered by model, format, precision."""
    tasks = dict(session.execute(select(ModelCard.name, ModelCard.task)).all())
    rows = session.scalars(select(Model).order_by(Model.name, Model.format, Model.precision))
    return [{**_artifact(row), "task": tasks.get(row.name)} for row in rows]


def card(session: Session, name: str) -> dict[str, Any] | None:
    """A model's card with its artifacts, or None when no such model is registered."""
    row = session.scalar(select(ModelCard).where(ModelCard.name == name))
    files = list(session.scalars(select(Model).where(Model.name == name).order_by(Model.format)))
    if row is None and not files:
        return None
    described: dict[str, Any] = {
        "name": name,
        "family": None,
        "input_size": None,
        "version": None,
        "task": None,
        "layout": None,
        "source": None,
        "license": None,
        "preprocessing": {},
        "inputs": files[0].inputs if files else [],
        "data": {},
        "recipe": {},
    }
    if row is not None:
        for key in described:
            if key != "name":
                described[key] = getattr(row, key)
    described["artifacts"] = [_artifact(f) for f in files]
    return described
