"""One database configuration for every engine on a clnas database: the service's own
(`service.db.make_engine`) and Optuna's storage (`workers.tune.open_storage`), which share one
file or server (issue 17).

SQLite: WAL (readers beside the writer; a property of the file, set once), a 60 s busy timeout
(`sqlite3`'s `timeout`), foreign keys on every connection. Server databases: a pre-pinged pool.
The options are plain values, so they travel with a pickled Optuna storage to Ray workers; the
connect hook does not, which is why everything it sets is either repeated by the options
(the busy timeout) or a property of the file (WAL).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine

BUSY_TIMEOUT_S = 60


def is_sqlite_file(url: str) -> bool:
    return url.startswith("sqlite:///") and ":memory:" not in url


def engine_options(url: str) -> dict[str, Any]:
    """Keyword arguments of `sqlalchemy.create_engine(url, ...)` for a clnas database."""
    if url.startswith("sqlite"):
        # One connection per request (the snapshot reads use the request's), as many as the
        # threadpool has threads (40): a request never waits behind idle capacity.
        return {"connect_args": {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
                "pool_size": 10, "max_overflow": 30}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}


def prepare(url: str) -> None:
    """Create a SQLite file's folder and switch the file to WAL (it stays so for every later
    connection, from any process)."""
    if not is_sqlite_file(url):
        return
    path = Path(url[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, timeout=BUSY_TIMEOUT_S) as con:
        con.execute("PRAGMA journal_mode=WAL")


def configure(engine: Engine) -> Engine:
    """Set the per-connection pragmas on a SQLite engine made with `engine_options`."""
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _pragmas)
    return engine


def _pragmas(dbapi_con: Any, _record: Any) -> None:
    cur = dbapi_con.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_engine(url: str) -> Engine:
    """An engine on a clnas database, configured as above."""
    prepare(url)
    return configure(sqlalchemy.create_engine(url, **engine_options(url)))
