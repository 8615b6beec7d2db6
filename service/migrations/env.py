"""Alembic environment for the service's own tables (Optuna keeps its own migrations)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import event, text

from service.db import VERSION_TABLE, Base, make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "sqlalchemy.url is set by service.db.migrate"


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Only the service's `clnas_*` tables; Optuna's tables in the same database are not ours."""
    if type_ == "table":
        return bool(name and name.startswith("clnas_"))
    return True


if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, version_table=VERSION_TABLE,
                      include_object=include_object, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        # A batch migration rebuilds a SQLite table (copy, DROP, rename); with foreign keys on,
        # the DROP deletes the rows of every table that references it with ON DELETE CASCADE
        # (a study's jobs and exports). The pragma must be set outside a transaction, so on
        # connect, after the engine's own pragmas; the check below replaces the enforcement.
        event.listen(engine, "connect",
                     lambda dbapi_con, _rec: dbapi_con.execute("PRAGMA foreign_keys=OFF"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          version_table=VERSION_TABLE, include_object=include_object,
                          render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.execute(text("PRAGMA foreign_key_check")).all()
                if broken:  # fail loudly: the service must not start on such a database
                    raise RuntimeError(f"migration left rows with dangling foreign keys "
                                       f"(table, rowid, parent, fk): {broken[:20]}")
    engine.dispose()
