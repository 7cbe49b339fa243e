"""checkpoint_retry: a checkpoint delivery's back-off and publication lease, and an index of
the pending ones (the scheduler looks for them every few seconds)

Revision ID: 0011_checkpoint_retry
Revises: 0010_evidence
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_checkpoint_retry"
down_revision = "0010_evidence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns: a plain ADD COLUMN on both backends (no batch copy on SQLite).
    op.add_column(
        "checkpoint_delivery",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "checkpoint_delivery",
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_checkpoint_delivery_published_at", "checkpoint_delivery", ["published_at"])


def downgrade() -> None:
    op.drop_index("ix_checkpoint_delivery_published_at", table_name="checkpoint_delivery")
    with op.batch_alter_table("checkpoint_delivery") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("next_attempt_at")
