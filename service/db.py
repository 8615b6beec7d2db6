"""What the service owns in SQL (SQLAlchemy 2 typed models), beside Optuna's tables in the same
database: runs (the state of every study and train job, issue 17), studies, jobs, export
records, API tokens (issue 5).

Schema changes go through Alembic (`service/migrations`), applied on start; the service's
version table is `clnas_alembic_version` so it never touches Optuna's own `alembic_version`.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from workers import database

STATUSES = ("queued", "running", "cancelling", "completed", "failed", "cancelled")
ACTIVE = ("queued", "running", "cancelling")  # a process may exist or be about to
KINDS = ("search", "train")
VERSION_TABLE = "clnas_alembic_version"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class RunRow(Base):
    """One piece of long work outside the request path, a search study or a promoted full
    training, and the only place its state lives (docs/api.md#run-lifecycle). Every status
    change is a conditional UPDATE in `service.lifecycle`.

    `spec` is what the work runs: a study's `clnas.study/1` document, or a train job's request
    with defaults filled in (recipe, data_dir, epochs, workers, ...). `progress` is the last
    progress the worker wrote (a train job: `{"epoch", "epochs", "step", "steps"}`). `attempts`
    counts the processes started for the run (resumes and restarts included)."""

    __tablename__ = "clnas_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # KINDS
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # STATUSES
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    pid: Mapped[int | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


def _run_column(cls: Any, column: Any) -> Any:
    """`column` of the row's run, as a scalar subquery (for WHERE clauses on studies/jobs)."""
    return select(column).where(RunRow.id == cls.run_id).scalar_subquery()


class _HasRun:
    """Read-only views of the run's state on a study or job row; writes go through
    `service.lifecycle`. The run is loaded with the row (`lazy="joined"`)."""

    if TYPE_CHECKING:
        run: Mapped[RunRow]

    @hybrid_property
    def status(self) -> str:
        return self.run.status

    @status.inplace.expression
    @classmethod
    def _status(cls) -> Any:
        return _run_column(cls, RunRow.status)

    @property
    def spec(self) -> dict[str, Any]:
        return self.run.spec

    @property
    def started_at(self) -> datetime | None:
        return self.run.started_at

    @property
    def finished_at(self) -> datetime | None:
        return self.run.finished_at

    @property
    def error(self) -> str | None:
        return self.run.error

    @property
    def progress(self) -> dict[str, Any] | None:
        return self.run.progress


class StudyRow(_HasRun, Base):
    """A search study: its name (unique, the Optuna study's) and its run, which holds the spec
    (the one stored copy the service reads) and the state."""

    __tablename__ = "clnas_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, index=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("clnas_runs.id", ondelete="CASCADE"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    run: Mapped[RunRow] = relationship(lazy="joined", cascade="all, delete-orphan",
                                       single_parent=True)
    jobs: Mapped[list[JobRow]] = relationship(back_populates="study", cascade="all, delete-orphan")
    exports: Mapped[list[ExportRow]] = relationship(
        back_populates="study", cascade="all, delete-orphan"
    )


class JobRow(_HasRun, Base):
    """A promoted full training of one trial (issue 7). Its request (with defaults filled in)
    is the run's `spec`; `curve` has one entry per finished epoch; `result` is set once the run
    has reached its last epoch."""

    __tablename__ = "clnas_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("clnas_studies.id", ondelete="CASCADE"), index=True
    )
    run_id: Mapped[int] = mapped_column(
        ForeignKey("clnas_runs.id", ondelete="CASCADE"), unique=True
    )
    trial_number: Mapped[int | None] = mapped_column(default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    curve: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[RunRow] = relationship(lazy="joined", cascade="all, delete-orphan",
                                       single_parent=True)
    study: Mapped[StudyRow | None] = relationship(back_populates="jobs")

    @hybrid_property
    def kind(self) -> str:
        return self.run.kind

    @kind.inplace.expression
    @classmethod
    def _kind(cls) -> Any:
        return _run_column(cls, RunRow.kind)

    @property
    def pid(self) -> int | None:
        return self.run.pid


class ExportRow(Base):
    __tablename__ = "clnas_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(
        ForeignKey("clnas_studies.id", ondelete="CASCADE"), index=True
    )
    trial_number: Mapped[int | None] = mapped_column(default=None)  # None: the front bundle
    format: Mapped[str] = mapped_column(String(8))
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    study: Mapped[StudyRow] = relationship(back_populates="exports")


class TokenRow(Base):
    """API tokens; only their SHA-256 is stored."""

    __tablename__ = "clnas_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "clnas_" + secrets.token_urlsafe(32)


def make_engine(url: str) -> Engine:
    """The service's engine, configured like Optuna's storage on the same database
    (`workers.database`: SQLite WAL, busy timeout, foreign keys; a pre-pinged pool elsewhere)."""
    return database.create_engine(url)


def sessions(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Apply the service's Alembic migrations up to `revision` (on start, and in tests)."""
    from alembic import command

    command.upgrade(_alembic(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Undo the service's migrations down to `revision` (to run an older release's service)."""
    from alembic import command

    command.downgrade(_alembic(url), revision)
