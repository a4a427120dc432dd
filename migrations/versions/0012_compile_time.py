"""Results carry compile_ms: the part of the model load spent compiling for the device

Declared once in agents.contract.metrics (the result message, the store column, the export
field, the dashboard's menus and the median over runs all follow from it); this migration
adds its column. Null on results measured before it, and where a runtime has no separate
compile step (onnxruntime, LiteRT).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch_op:
        batch_op.add_column(sa.Column("compile_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results") as batch_op:
        batch_op.drop_column("compile_ms")
