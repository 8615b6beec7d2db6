"""Alembic upgrades from the first migration to head on a database that already holds data
(issue 5, acceptance 6; issue 17: 0004 moves every study's and job's state into `clnas_runs`),
on SQLite and PostgreSQL; Optuna's tables beside ours are left alone; the downgrade puts the
state back where 0003 kept it."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from service.db import downgrade, migrate
from tests.service.conftest import seed_study
from workers.tune import open_storage

STATUSES = ("queued", "running", "completed", "failed", "cancelled")


def _json(value: Any) -> Any:
    return value if not isinstance(value, str) else json.loads(value)


def _spec(name: str) -> dict[str, Any]:
    return {"format": "clnas.study/1", "name": name, "dataset": "synthetic"}


def _seed_0001(con: sa.Connection) -> None:
    """One study in each status (with errors, start times), and two train jobs of the first."""
    for i, status in enumerate(STATUSES):
        con.execute(sa.text(
            "INSERT INTO clnas_studies (name, spec, status, created_at, updated_at, started_at, "
            "error) VALUES (:n, :s, :st, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :t, :e)"),
            {"n": f"old-{status}", "s": json.dumps(_spec(f"old-{status}")), "st": status,
             "t": None if status == "queued" else "2026-11-20 10:00:00+00:00",
             "e": "boom" if status == "failed" else None})
        assert i >= 0
    sid = con.execute(sa.text("SELECT id FROM clnas_studies WHERE name = 'old-queued'")).scalar()
    for status, payload in (("completed", {"recipe": "clcnet", "epochs": 3}),
                            ("running", {"recipe": "clcnet", "epochs": 9})):
        con.execute(sa.text(
            "INSERT INTO clnas_jobs (study_id, kind, status, trial_number, payload, pid, "
            "created_at) VALUES (:sid, 'train', :st, 4, :p, :pid, CURRENT_TIMESTAMP)"),
            {"sid": sid, "st": status, "p": json.dumps(payload),
             "pid": 4242 if status == "running" else None})
    con.execute(sa.text("INSERT INTO clnas_tokens (name, sha256, created_at) "
                        "VALUES ('ci', :h, CURRENT_TIMESTAMP)"), {"h": "0" * 64})


def _seed_0003(con: sa.Connection) -> None:
    """What 0002 and 0003 added: export records, start counts, a job's progress and curve."""
    sid = con.execute(sa.text("SELECT id FROM clnas_studies WHERE name = 'old-queued'")).scalar()
    for number in (None, 4):
        con.execute(sa.text("INSERT INTO clnas_exports (study_id, trial_number, format, sha256, "
                            "created_at) VALUES (:sid, :n, 'json', :h, CURRENT_TIMESTAMP)"),
                    {"sid": sid, "n": number, "h": "1" * 64})
    con.execute(sa.text("UPDATE clnas_studies SET runs = 2 WHERE name = 'old-completed'"))
    con.execute(sa.text("UPDATE clnas_jobs SET progress = :p, curve = :c WHERE status = "
                        "'running'"),
                {"p": json.dumps({"epoch": 2, "epochs": 9}), "c": json.dumps([{"epoch": 1}])})


def test_upgrade_first_to_head_keeps_data(db_url: str) -> None:
    migrate(db_url, "0001")
    engine = sa.create_engine(db_url)
    with engine.begin() as con:
        _seed_0001(con)
    seed_study(db_url, _spec("old-completed") | {"search": {"n_trials": 5}}, 5)  # Optuna's
    open_storage(db_url)
    migrate(db_url, "0003")
    with engine.begin() as con:
        _seed_0003(con)
    migrate(db_url)  # 0003 -> 0004 (head)
    insp = sa.inspect(engine)
    assert not {"status", "spec", "runs"} & {c["name"] for c in insp.get_columns("clnas_studies")}
    assert "payload" not in {c["name"] for c in insp.get_columns("clnas_jobs")}
    with engine.connect() as con:
        studies = con.execute(sa.text(
            "SELECT s.name, r.kind, r.status, r.spec, r.error, r.attempts, r.started_at "
            "FROM clnas_studies s JOIN clnas_runs r ON r.id = s.run_id ORDER BY s.id")).all()
        assert [(s.name, s.kind, s.status) for s in studies] == [
            (f"old-{st}", "search", st) for st in STATUSES]
        assert all(_json(s.spec) == _spec(s.name) for s in studies)
        assert [s.error for s in studies] == [None, None, None, "boom", None]
        assert [s.attempts for s in studies] == [0, 0, 2, 0, 0]
        assert studies[0].started_at is None and studies[1].started_at is not None
        jobs = con.execute(sa.text(
            "SELECT j.trial_number, j.curve, r.kind, r.status, r.spec, r.pid, r.progress "
            "FROM clnas_jobs j JOIN clnas_runs r ON r.id = j.run_id ORDER BY j.id")).all()
        assert [(j.kind, j.status, j.trial_number) for j in jobs] == [
            ("train", "completed", 4), ("train", "running", 4)]  # no job lost to the rebuild
        assert _json(jobs[1].spec) == {"recipe": "clcnet", "epochs": 9} and jobs[1].pid == 4242
        assert _json(jobs[1].progress) == {"epoch": 2, "epochs": 9}
        assert _json(jobs[1].curve) == [{"epoch": 1}]
        assert con.execute(sa.text("SELECT count(*) FROM clnas_runs")).scalar() == 7
        assert con.execute(sa.text("SELECT count(*) FROM clnas_exports")).scalar() == 2
        assert con.execute(sa.text("SELECT count(*) FROM clnas_tokens")).scalar() == 1
        assert con.execute(sa.text("SELECT version_num FROM clnas_alembic_version")
                           ).scalar() == "0004"
        assert con.execute(sa.text("SELECT count(*) FROM trials")).scalar() == 5
    with engine.begin() as con:  # the id sequence is past the copied runs (PostgreSQL)
        con.execute(sa.text("INSERT INTO clnas_runs (kind, status, spec, attempts, created_at) "
                            "VALUES ('search', 'queued', '{}', 0, CURRENT_TIMESTAMP)"))
        con.execute(sa.text("DELETE FROM clnas_runs WHERE id = 8"))
    migrate(db_url)  # idempotent at head
    engine.dispose()


def test_downgrade_round_trip(db_url: str) -> None:
    migrate(db_url, "0001")
    engine = sa.create_engine(db_url)
    with engine.begin() as con:
        _seed_0001(con)
    migrate(db_url, "0003")
    with engine.begin() as con:
        _seed_0003(con)

    def dump() -> list[Any]:
        with engine.connect() as con:
            s = con.execute(sa.text("SELECT name, spec, status, error, runs, started_at "
                                    "FROM clnas_studies ORDER BY id")).all()
            j = con.execute(sa.text("SELECT kind, status, payload, progress, curve, pid "
                                    "FROM clnas_jobs ORDER BY id")).all()
            e = con.execute(sa.text("SELECT count(*) FROM clnas_exports")).scalar()
        # SQLite keeps timestamps as text: compare them to the second
        return [[(r[0], _json(r[1]), *r[2:5], str(r[5])[:19]) for r in s],
                [(r[0], r[1], _json(r[2]), _json(r[3]), _json(r[4]), r[5]) for r in j], e]

    before = dump()
    migrate(db_url)
    downgrade(db_url, "0003")
    assert dump() == before
    migrate(db_url)
    with engine.connect() as con:
        assert con.execute(sa.text("SELECT count(*) FROM clnas_runs")).scalar() == 7
    engine.dispose()
