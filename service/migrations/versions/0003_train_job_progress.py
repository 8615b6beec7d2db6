"""Promoted full training: per-job progress and curve; jobs indexed by status.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clnas_jobs") as batch:
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("curve", sa.JSON(), nullable=True))
    op.create_index("ix_clnas_jobs_status", "clnas_jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_clnas_jobs_status", table_name="clnas_jobs")
    with op.batch_alter_table("clnas_jobs") as batch:
        batch.drop_column("curve")
        batch.drop_column("progress")
