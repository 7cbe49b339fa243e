"""evidence: index the audit chain by asset, so one asset's evidence is one indexed query

Revision ID: 0010_evidence
Revises: 0009_metrics
Create Date: 2026-12-08
"""

from __future__ import annotations

from alembic import op

revision = "0010_evidence"
down_revision = "0009_metrics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain CREATE INDEX on both backends (no batch: SQLite would not copy the table for it).
    op.create_index("ix_timeline_event_asset_seq", "timeline_event", ["asset", "seq"])


def downgrade() -> None:
    op.drop_index("ix_timeline_event_asset_seq", table_name="timeline_event")
