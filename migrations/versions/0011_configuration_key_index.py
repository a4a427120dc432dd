"""Trials carry their configuration's JSON parts as one indexed text: the dashboard groups by it

`trials.config_key` is scenario_params, runtime_options and input_shapes as one canonical
JSON text ("" when all are empty; orchestrator.configurations.config_key), filled here for
every existing trial. `ix_trials_model_batch` gains `scenario` and `config_key`, so Compare
and Trade-offs group trials into configurations (never pooling two scenarios, two sets of
runtime options or two input shapes) from the index alone, as before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 07:05:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The index's columns before and after (frozen here: a migration never imports models).
BEFORE = ["model_id", "batch_size", "precision", "campaign_id", "device_id", "runtime", "id"]
AFTER = [*BEFORE[:-1], "scenario", "config_key", "id"]
BATCH = 5000


def _config_key(params: object, options: object, shapes: object) -> str:
    """orchestrator.configurations.config_key, frozen as of this revision."""
    decode = lambda v: (json.loads(v) if isinstance(v, str) else v) or {}  # noqa: E731
    parts = {
        "scenario_params": decode(params),
        "runtime_options": decode(options),
        "input_shapes": decode(shapes),
    }
    return json.dumps(parts, sort_keys=True) if any(parts.values()) else ""


def _backfill() -> None:
    connection = op.get_bind()
    trials = sa.table(
        "trials",
        sa.column("id", sa.String),
        sa.column("scenario_params", sa.JSON),
        sa.column("runtime_options", sa.JSON),
        sa.column("input_shapes", sa.JSON),
        sa.column("config_key", sa.Text),
    )
    rows = connection.execute(
        sa.select(
            trials.c.id, trials.c.scenario_params, trials.c.runtime_options, trials.c.input_shapes
        )
    ).all()
    changed = [
        {"trial": trial_id, "key": key}
        for trial_id, params, options, shapes in rows
        if (key := _config_key(params, options, shapes))
    ]
    update = (
        trials.update()
        .where(trials.c.id == sa.bindparam("trial"))
        .values(config_key=sa.bindparam("key"))
    )
    for start in range(0, len(changed), BATCH):
        connection.execute(update, changed[start : start + BATCH])


def upgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config_key", sa.Text(), nullable=False, server_default=""))
    _backfill()
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index("ix_trials_model_batch")
        batch_op.create_index("ix_trials_model_batch", AFTER, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_index("ix_trials_model_batch")
        batch_op.create_index("ix_trials_model_batch", BEFORE, unique=False)
        batch_op.drop_column("config_key")
