"""One database configuration (issue 17): the service's engine and Optuna's storage on the same
database are built from `workers.database`, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.db import make_engine, migrate
from workers import database
from workers.study import load_study
from workers.tune import ARCH_ATTR, open_storage, prepare_studies

EXAMPLE = Path(__file__).parents[2] / "examples" / "synthetic_small.json"


def _settings(engine: Engine) -> dict[str, Any]:
    """What a connection of `engine` runs with."""
    pool = engine.pool
    out: dict[str, Any] = {"pool": (type(pool).__name__, pool._pool.maxsize,
                                    pool._max_overflow, pool._pre_ping)}
    with engine.connect() as con:
        if engine.dialect.name == "sqlite":
            for pragma in ("journal_mode", "busy_timeout", "foreign_keys"):
                out[pragma] = con.exec_driver_sql(f"PRAGMA {pragma}").scalar()
    return out


def test_the_service_and_optuna_configure_one_database_alike(db_url: str) -> None:
    storage = open_storage(db_url)
    service = make_engine(db_url)
    try:
        ours, optunas = _settings(service), _settings(storage.engine)
        assert ours == optunas
        if db_url.startswith("sqlite"):
            assert ours["journal_mode"] == "wal"
            assert ours["busy_timeout"] == database.BUSY_TIMEOUT_S * 1000
            assert ours["foreign_keys"] == 1
        else:
            assert ours["pool"][3]  # pre-pinged
        # a Ray worker gets the storage pickled: the options travel with it
        clone = pickle.loads(pickle.dumps(storage))
        assert clone.engine_kwargs == database.engine_options(storage.url)
        assert _settings(clone.engine)["pool"] == ours["pool"]
    finally:
        service.dispose()
        storage.engine.dispose()


def test_a_writer_on_one_engine_waits_for_the_other(db_url: str) -> None:
    """SQLite has one writer at a time: Optuna's storage waits (busy timeout) while the service
    holds the write lock longer than sqlite3's default 5 s, instead of failing with `database is
    locked`. (PostgreSQL: both write at once.)"""
    migrate(db_url)
    storage = open_storage(db_url)
    service = make_engine(db_url)
    released = threading.Event()

    def hold_the_lock() -> None:
        with service.begin() as con:
            con.execute(sa.text("INSERT INTO clnas_tokens (name, sha256, created_at) "
                                "VALUES ('t', 'x', CURRENT_TIMESTAMP)"))
            time.sleep(6.0 if service.dialect.name == "sqlite" else 0.5)
        released.set()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        time.sleep(0.2)  # the service's transaction has written: the lock is held
        optuna.create_study(study_name="waits", storage=storage)
        holder.join()
        assert released.is_set()
        assert optuna.load_study(study_name="waits", storage=storage) is not None
        with service.connect() as con:
            assert con.scalar(sa.text("SELECT count(*) FROM clnas_tokens")) == 1
    finally:
        holder.join()
        service.dispose()
        storage.engine.dispose()


def _open_after(url: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        open_storage(url).engine.dispose()
        results.put("ok")
    except Exception as e:  # reported to the parent, which names it
        results.put(f"{type(e).__name__}: {e}"[:300])


def test_processes_opening_a_new_database_at_once_all_succeed(db_url: str) -> None:
    """The service, a study's driver, its Ray workers and a second `clnas search` may open one
    new database at the same moment. Bare `RDBStorage(url)` calls race on Optuna's table
    creation ("table studies already exists", a UNIQUE failure on `alembic_version`); without
    its lock and retries `open_storage` fails this test on SQLite. It serializes the creators
    on SQLite and retries a creation that failed (it then finds the tables). The study made
    meanwhile round-trips."""
    spec = load_study(EXAMPLE)
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, as the real processes
    n = 3
    barrier, results = ctx.Barrier(n + 1), ctx.Queue()
    procs = [ctx.Process(target=_open_after, args=(db_url, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)  # the children import first
        storage = open_storage(db_url)  # this process races them too
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():  # a child that hung (a lock inherited through fork): no leak
                p.kill()
                p.join()
    assert outcomes == ["ok"] * n
    try:
        with storage.engine.connect() as con:
            assert con.scalar(sa.text("SELECT count(*) FROM alembic_version")) == 1
        prepare_studies(storage, spec)
        study = optuna.load_study(study_name=spec.name, storage=storage)
        trial = study.ask()
        trial.set_user_attr(ARCH_ATTR, {"name": "x"})
        study.tell(trial, [0.25, 1234.0])
        again = optuna.load_study(study_name=spec.name, storage=db_url)
        assert [t.values for t in again.trials] == [[0.25, 1234.0]]
        assert again.trials[0].user_attrs[ARCH_ATTR] == {"name": "x"}
    finally:
        storage.engine.dispose()
