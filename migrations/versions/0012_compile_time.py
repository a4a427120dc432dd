"""Results carry compile_ms: the part of the model load spent compiling for the device

Declared once in agents.contract.metrics (the result message, the store column, the export
field, the dashboard's menus and the median over runs all follow from it); this migration
adds its column. TVM results measured before it kept their compile time in their placement
(`placement.compile_ms`): it is copied into the column. Null on other earlier results, and
where a runtime has no separate compile step (onnxruntime, LiteRT).

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
    if op.get_bind().dialect.name == "postgresql":
        earlier = "CAST(placement->>'compile_ms' AS double precision)"
    else:
        earlier = "json_extract(placement, '$.compile_ms')"
    op.execute(f"UPDATE results SET compile_ms = {earlier} WHERE compile_ms IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("results") as batch_op:
        batch_op.drop_column("compile_ms")
