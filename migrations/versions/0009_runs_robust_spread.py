"""Runs: each result is one run of its configuration; its robust within-run spread

A configuration is measured as several runs (trials of one configuration; `trials.repeat`
is the run number) and its figures are computed across them at read time
(orchestrator.configurations). Each run keeps its summary, now with a robust spread that one
hiccup cannot inflate: the interquartile range, the median absolute deviation, and
robust_cv = 1.4826 * MAD / median (the CV for normal data). Older results keep these null
and display as configurations of one run.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 02:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("iqr_ms", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("mad_ms", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("robust_cv", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("robust_cv")
        batch_op.drop_column("mad_ms")
        batch_op.drop_column("iqr_ms")
