"""Operator profiles: a result's profile pass (result_profiles, every node compressed) and
one row per op type, unit and precision (profile_op_types).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "result_profiles",
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("requested_unit", sa.String(length=128), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.Column("wall_ms", sa.Float(), nullable=True),
        sa.Column("total_ms", sa.Float(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("nodes_zlib", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_result_profiles_result_id_results")
        ),
        sa.PrimaryKeyConstraint("result_id", name=op.f("pk_result_profiles")),
    )
    op.create_table(
        "profile_op_types",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("op_type", sa.String(length=128), nullable=False),
        sa.Column("unit", sa.String(length=128), nullable=False),
        sa.Column("precision", sa.String(length=16), nullable=True),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Float(), nullable=False),
        sa.Column("time_ms", sa.Float(), nullable=True),
        sa.Column("share", sa.Float(), nullable=True),
        sa.Column("fallback_nodes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["result_profiles.result_id"],
            name=op.f("fk_profile_op_types_result_id_result_profiles"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_op_types")),
    )
    op.create_index(
        op.f("ix_profile_op_types_result_id"), "profile_op_types", ["result_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_profile_op_types_result_id"), table_name="profile_op_types")
    op.drop_table("profile_op_types")
    op.drop_table("result_profiles")
