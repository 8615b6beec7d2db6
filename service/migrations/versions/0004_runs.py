"""One run lifecycle (issue 17): `clnas_runs` holds the state and spec of every study and train
job; studies and jobs point to their run and lose their own state columns.

Every study and job becomes one run carrying its status, spec (a job's `payload`), progress,
error, pid, timestamps and start count (a study's `runs`); nothing is dropped before it is
copied. The downgrade copies it all back. Runs get explicit ids (studies first, then jobs), so
on PostgreSQL the id sequence is moved past them afterwards.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
runs = sa.table(
    "clnas_runs", sa.column("id", sa.Integer()), sa.column("kind", sa.String()),
    sa.column("status", sa.String()), sa.column("spec", sa.JSON()),
    sa.column("progress", sa.JSON()), sa.column("error", sa.Text()),
    sa.column("pid", sa.Integer()), sa.column("attempts", sa.Integer()),
    sa.column("created_at", TS), sa.column("started_at", TS), sa.column("finished_at", TS),
)
STUDY_STATE = ("spec", "status", "started_at", "finished_at", "error", "runs")
JOB_STATE = ("kind", "status", "payload", "progress", "pid", "started_at", "finished_at",
             "error")


def _studies() -> sa.TableClause:
    return sa.table("clnas_studies", sa.column("id", sa.Integer()), sa.column("run_id"),
                    sa.column("spec", sa.JSON()), sa.column("status", sa.String()),
                    sa.column("created_at", TS), sa.column("started_at", TS),
                    sa.column("finished_at", TS), sa.column("error", sa.Text()),
                    sa.column("runs", sa.Integer()))


def _jobs() -> sa.TableClause:
    return sa.table("clnas_jobs", sa.column("id", sa.Integer()), sa.column("run_id"),
                    sa.column("kind", sa.String()), sa.column("status", sa.String()),
                    sa.column("payload", sa.JSON()), sa.column("progress", sa.JSON()),
                    sa.column("pid", sa.Integer()), sa.column("created_at", TS),
                    sa.column("started_at", TS), sa.column("finished_at", TS),
                    sa.column("error", sa.Text()))


def upgrade() -> None:
    op.create_table(
        "clnas_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
    )
    op.create_index("ix_clnas_runs_status", "clnas_runs", ["status"])
    for table in ("clnas_studies", "clnas_jobs"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("run_id", sa.Integer(), nullable=True))

    con = op.get_bind()
    studies, jobs = _studies(), _jobs()
    next_id = 1
    for r in con.execute(sa.select(studies).order_by(studies.c.id)).mappings().all():
        con.execute(runs.insert().values(
            id=next_id, kind="search", status=r["status"], spec=r["spec"], progress=None,
            error=r["error"], pid=None, attempts=r["runs"] or 0, created_at=r["created_at"],
            started_at=r["started_at"], finished_at=r["finished_at"]))
        con.execute(studies.update().where(studies.c.id == r["id"]).values(run_id=next_id))
        next_id += 1
    for r in con.execute(sa.select(jobs).order_by(jobs.c.id)).mappings().all():
        con.execute(runs.insert().values(
            id=next_id, kind=r["kind"], status=r["status"], spec=r["payload"] or {},
            progress=r["progress"], error=r["error"], pid=r["pid"],
            attempts=0 if r["status"] == "queued" else 1, created_at=r["created_at"],
            started_at=r["started_at"], finished_at=r["finished_at"]))
        con.execute(jobs.update().where(jobs.c.id == r["id"]).values(run_id=next_id))
        next_id += 1
    if con.dialect.name == "postgresql":
        con.execute(sa.text("SELECT setval(pg_get_serial_sequence('clnas_runs', 'id'), "
                            ":n, false)"), {"n": next_id})

    op.drop_index("ix_clnas_studies_status", table_name="clnas_studies")
    op.drop_index("ix_clnas_jobs_status", table_name="clnas_jobs")
    for table, state in (("clnas_studies", STUDY_STATE), ("clnas_jobs", JOB_STATE)):
        with op.batch_alter_table(table) as batch:
            for column in state:
                batch.drop_column(column)
            batch.alter_column("run_id", existing_type=sa.Integer(), nullable=False)
            batch.create_foreign_key(f"fk_{table}_run_id", "clnas_runs", ["run_id"], ["id"],
                                     ondelete="CASCADE")
            batch.create_unique_constraint(f"uq_{table}_run_id", ["run_id"])


def downgrade() -> None:
    with op.batch_alter_table("clnas_studies") as batch:
        batch.add_column(sa.Column("spec", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("started_at", TS, nullable=True))
        batch.add_column(sa.Column("finished_at", TS, nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("runs", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("clnas_jobs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=True))
        batch.add_column(sa.Column("status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("started_at", TS, nullable=True))
        batch.add_column(sa.Column("finished_at", TS, nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))

    con = op.get_bind()
    studies, jobs = _studies(), _jobs()
    back = {"cancelling": "running"}  # 0003's services know no `cancelling`: they requeue it
    for r in con.execute(sa.select(runs)).mappings().all():
        status = back.get(r["status"], r["status"])
        con.execute(studies.update().where(studies.c.run_id == r["id"]).values(
            spec=r["spec"], status=status, started_at=r["started_at"],
            finished_at=r["finished_at"], error=r["error"], runs=r["attempts"]))
        con.execute(jobs.update().where(jobs.c.run_id == r["id"]).values(
            kind=r["kind"], status=status, payload=r["spec"], progress=r["progress"],
            pid=r["pid"], started_at=r["started_at"], finished_at=r["finished_at"],
            error=r["error"]))

    for table in ("clnas_studies", "clnas_jobs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_run_id", type_="unique")
            batch.drop_constraint(f"fk_{table}_run_id", type_="foreignkey")
            batch.drop_column("run_id")
    with op.batch_alter_table("clnas_studies") as batch:
        for column in ("spec", "status"):
            batch.alter_column(column, existing_type=_type(column), nullable=False)
    with op.batch_alter_table("clnas_jobs") as batch:
        for column in ("kind", "status", "payload"):
            batch.alter_column(column, existing_type=_type(column), nullable=False)
    op.create_index("ix_clnas_studies_status", "clnas_studies", ["status"])
    op.create_index("ix_clnas_jobs_status", "clnas_jobs", ["status"])
    op.drop_index("ix_clnas_runs_status", table_name="clnas_runs")
    op.drop_table("clnas_runs")


def _type(column: str) -> sa.types.TypeEngine[Any]:
    return sa.JSON() if column in ("spec", "payload") else sa.String(16)
