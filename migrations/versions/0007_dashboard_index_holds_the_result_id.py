"""dashboard index holds the result id: PostgreSQL reads the dashboard from the index alone

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

# ix_results_dashboard as migration 0005 made it (frozen here: a migration never imports models).
BEFORE = [
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
AFTER = ["trial_id", "id", *BEFORE[1:]]


def _recreate(columns: list[str]) -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_dashboard")
        batch_op.create_index("ix_results_dashboard", columns, unique=False)


def upgrade() -> None:
    _recreate(AFTER)


def downgrade() -> None:
    _recreate(BEFORE)
