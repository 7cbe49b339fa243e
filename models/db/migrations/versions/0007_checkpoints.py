"""checkpoints: signed checkpoints of the audit chain, their deliveries to sinks

Revision ID: 0007_checkpoints
Revises: 0006_drills
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_checkpoints"
down_revision = "0006_drills"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    op.create_table(
        "checkpoint_delivery",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sink", sa.String(length=512), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("number", "sink"),
    )
    op.create_table(
        "checkpoint_incident",
        sa.Column("incident_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("incident_id", "number"),
    )


def downgrade() -> None:
    op.drop_table("checkpoint_incident")
    op.drop_table("checkpoint_delivery")
    op.drop_table("audit_checkpoint")
