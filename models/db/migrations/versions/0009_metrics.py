"""metrics: the counters a Prometheus scrape reads, seeded from the rows already there

Revision ID: 0009_metrics
Revises: 0008_version_scan
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_metrics"
down_revision = "0008_version_scan"
branch_labels = None
depends_on = None

# What the rows already there say, in the labels' canonical JSON (keys sorted, compact), so
# that the first increments after the upgrade add to them. Histograms and playbook endings are
# counted from this version on: their history is not in any row.
_SEEDS = (
    """
    INSERT INTO metric_counter (name, labels, value)
    SELECT 'incidents_opened',
           '{"severity":"' || severity || '","source":"' || source || '","type":"' || type || '"}',
           COUNT(*)
    FROM incident GROUP BY severity, source, type
    """,
    """
    INSERT INTO metric_counter (name, labels, value)
    SELECT 'incidents_resolved',
           '{"severity":"' || severity || '","source":"' || source || '","type":"' || type || '"}',
           COUNT(*)
    FROM incident WHERE status = 'resolved' GROUP BY severity, source, type
    """,
    """
    INSERT INTO metric_counter (name, labels, value)
    SELECT 'outbox_' || status, '{"channel":"' || channel || '"}', COUNT(*)
    FROM notification_outbox WHERE status IN ('delivered', 'failed') GROUP BY status, channel
    """,
    """
    INSERT INTO metric_counter (name, labels, value)
    SELECT 'intake_alerts',
           '{"action":"' || SUBSTR(action, 7) || '","result":"' ||
           CASE SUBSTR(action, 7) WHEN 'attached' THEN 'deduplicated'
                WHEN 'rejected' THEN 'rejected' ELSE 'accepted' END || '"}',
           COUNT(*)
    FROM timeline_event WHERE kind = 'alert' AND action LIKE 'alert.%' GROUP BY action
    """,
)


def upgrade() -> None:
    op.create_table(
        "metric_counter",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.String(length=512), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "labels"),
    )
    for statement in _SEEDS:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("metric_counter")
