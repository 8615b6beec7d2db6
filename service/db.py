"""What the service owns in SQL (SQLAlchemy 2 typed models), beside Optuna's tables in the same
database: studies with their spec and status, jobs, export records, API tokens (issue 5).

Schema changes go through Alembic (`service/migrations`), applied on start; the service's
version table is `clnas_alembic_version` so it never touches Optuna's own `alembic_version`.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from workers import database

STATUSES = ("queued", "running", "completed", "failed", "cancelled")
ACTIVE = ("queued", "running")
VERSION_TABLE = "clnas_alembic_version"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class StudyRow(Base):
    __tablename__ = "clnas_studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, index=True)
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    runs: Mapped[int] = mapped_column(Integer, default=0)  # times a study process was started

    jobs: Mapped[list[JobRow]] = relationship(back_populates="study", cascade="all, delete-orphan")
    exports: Mapped[list[ExportRow]] = relationship(
        back_populates="study", cascade="all, delete-orphan"
    )


class JobRow(Base):
    """Long work outside the request path: one study run, or a promoted full training.

    A train job's `payload` is its request with defaults filled in (recipe, data_dir, epochs,
    workers, ...); `progress` is `{"epoch", "epochs", "step", "steps"}` (epochs finished so far,
    steps of the epoch under way); `curve` has one entry per finished epoch; `result` is set
    once the run has reached its last epoch."""

    __tablename__ = "clnas_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int | None] = mapped_column(
        ForeignKey("clnas_studies.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # "search" | "train"
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    trial_number: Mapped[int | None] = mapped_column(default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    curve: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    pid: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)

    study: Mapped[StudyRow | None] = relationship(back_populates="jobs")


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


def migrate(url: str, revision: str = "head") -> None:
    """Apply the service's Alembic migrations up to `revision` (on start, and in tests)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, revision)
