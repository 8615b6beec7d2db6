"""Issue 5, acceptance 6: Alembic upgrade from the first migration to head on a database that
already holds data (SQLite and PostgreSQL); Optuna's tables beside ours are left alone."""

from __future__ import annotations

import json

import sqlalchemy as sa

from service.db import migrate
from tests.service.conftest import seed_study
from workers.tune import open_storage


def test_upgrade_first_to_head_keeps_data(db_url: str) -> None:
    migrate(db_url, "0001")
    engine = sa.create_engine(db_url)
    spec = {"format": "clnas.study/1", "name": "old-study", "dataset": "synthetic"}
    with engine.begin() as con:
        con.execute(
            sa.text("INSERT INTO clnas_studies (name, spec, status, created_at, updated_at) "
                    "VALUES (:n, :s, 'completed', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
            {"n": "old-study", "s": json.dumps(spec)},
        )
        con.execute(
            sa.text("INSERT INTO clnas_tokens (name, sha256, created_at) "
                    "VALUES ('ci', :h, CURRENT_TIMESTAMP)"),
            {"h": "0" * 64},
        )
    seed_study(db_url, spec | {"search": {"n_trials": 5}}, 5)  # Optuna's tables, same database
    open_storage(db_url)
    migrate(db_url)  # 0001 -> 0003 (head)
    insp = sa.inspect(engine)
    assert "clnas_exports" in insp.get_table_names()
    assert "runs" in {c["name"] for c in insp.get_columns("clnas_studies")}
    assert {"progress", "curve"} <= {c["name"] for c in insp.get_columns("clnas_jobs")}
    with engine.connect() as con:
        row = con.execute(sa.text("SELECT name, spec, status, runs FROM clnas_studies")).one()
        assert row.name == "old-study" and row.status == "completed" and row.runs == 0
        spec_back = row.spec if isinstance(row.spec, dict) else json.loads(row.spec)
        assert spec_back == spec
        assert con.execute(sa.text("SELECT count(*) FROM clnas_tokens")).scalar() == 1
        version = con.execute(sa.text("SELECT version_num FROM clnas_alembic_version")).scalar()
        assert version == "0003"
        assert con.execute(sa.text("SELECT count(*) FROM trials")).scalar() == 5
    migrate(db_url)  # idempotent at head
    engine.dispose()
