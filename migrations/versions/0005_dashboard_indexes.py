"""dashboard indexes: trials by model and batch size, result metrics by trial

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 20:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TRIAL_COLUMNS = ["model_id", "batch_size", "precision", "campaign_id", "device_id", "runtime", "id"]
RESULT_COLUMNS = [
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


def upgrade() -> None:
    op.create_index("ix_trials_model_batch", "trials", TRIAL_COLUMNS, unique=False)
    op.create_index("ix_results_dashboard", "results", RESULT_COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index("ix_results_dashboard", table_name="results")
    op.drop_index("ix_trials_model_batch", table_name="trials")
