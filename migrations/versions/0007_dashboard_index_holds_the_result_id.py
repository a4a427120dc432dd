"""dashboard index includes the result id on PostgreSQL: it reads the dashboard from the index alone

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 20:40:50.399100
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# ix_results_dashboard's columns (frozen here: a migration never imports models). SQLite
# keeps the rowid in every index already; there the index is recreated unchanged.
COLUMNS = [
    "trial_id",
    "actual_device",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "throughput_ips",
    "peak_rss_mb",
    "energy_mj_per_inference",
    "accuracy",
    "fidelity_cosine",
    "fallback",
    "throttled",
]


def _recreate(include: list[str]) -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_dashboard")
        batch_op.create_index(
            "ix_results_dashboard", COLUMNS, unique=False, postgresql_include=include
        )


def upgrade() -> None:
    _recreate(["id"])


def downgrade() -> None:
    _recreate([])
