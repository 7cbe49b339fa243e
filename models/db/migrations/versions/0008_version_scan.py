"""version_scan: each version's latest scan record (scanner version, allow-list fingerprint,
verdict, findings by severity, second-opinion engines)

Revision ID: 0008_version_scan
Revises: 0007_checkpoints
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_version_scan"
down_revision = "0007_checkpoints"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "version_scan",
        sa.Column("version_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("scanner_version", sa.Integer(), nullable=False),
        sa.Column("allow_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("allowed", sa.Integer(), nullable=False),
        sa.Column("engines", sa.JSON(), nullable=False),
        sa.Column("scanned_during", sa.String(length=16), nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["asset_version.id"]),
        sa.PrimaryKeyConstraint("version_id"),
    )


def downgrade() -> None:
    op.drop_table("version_scan")
