"""Export records; count of study runs (resumes) per study.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clnas_exports",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(),
                  sa.ForeignKey("clnas_studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=True),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_clnas_exports_study_id", "clnas_exports", ["study_id"])
    with op.batch_alter_table("clnas_studies") as batch:
        batch.add_column(sa.Column("runs", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("clnas_studies") as batch:
        batch.drop_column("runs")
    op.drop_table("clnas_exports")
