"""intake: one row per active dedup key, so alert storms open one incident

Revision ID: 0005_intake
Revises: 0004_approvals
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_intake"
down_revision = "0004_approvals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incident_dedup_key",
        sa.Column("dedup_key", sa.String(length=320), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dedup_key"),
    )
    with op.batch_alter_table("incident_dedup_key", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_dedup_key_incident_id"), ["incident_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("incident_dedup_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_dedup_key_incident_id"))
    op.drop_table("incident_dedup_key")
