"""Input-shape sweeps: a trial may run its model at other input shapes than registered

`trials.input_shapes` holds a sweep's shapes by input name (campaign spec
`models: [{name, shapes: {input: [shape, ...]}}]`); null means the registered shapes, as
for every older trial. It is part of what makes two trials runs of one configuration.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 06:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("input_shapes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trials", schema=None) as batch_op:
        batch_op.drop_column("input_shapes")
