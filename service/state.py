"""What one running service holds: its settings, database engine and sessions, Optuna's
storage, the snapshot cache and the study runner (built by `service.app.create_app`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna

from service.db import StudyRow, make_engine, sessions
from service.errors import Busy
from service.runner import StudyRunner
from service.settings import Settings
from service.store import SnapshotCache
from workers.study import StudySpec


class AnalysisSlots:
    """At most `n` cost analyses at once (docs/limits.md#requests); one that waits longer than
    `wait_s` for a slot raises `Busy` instead of queueing without bound."""

    def __init__(self, n: int, wait_s: float = 10.0):
        self._slots = threading.BoundedSemaphore(n)
        self.wait_s = wait_s

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.wait_s):
            raise Busy("the server is busy analysing other designs; retry shortly")
        try:
            yield
        finally:
            self._slots.release()


class State:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = make_engine(settings.db_url)
        self.sessions = sessions(self.engine)
        self.cache = SnapshotCache(self.engine)  # fast reads of studies' trials
        self.storage: optuna.storages.RDBStorage | None = None
        self.runner: StudyRunner | None = None
        self.lock = threading.Lock()
        self.zoo: list[dict[str, Any]] | None = None
        self.analyses = AnalysisSlots(settings.max_analyses)

    def spec(self, row: StudyRow) -> StudySpec:
        """The study's spec, read from its run: the one stored copy (issue 17), so every
        replica and process reads the same one."""
        return StudySpec.model_validate(row.spec)

    def forget(self, study_id: int) -> None:
        self.cache.forget(study_id)

    @property
    def optuna(self) -> optuna.storages.RDBStorage:
        if self.storage is None:
            raise RuntimeError("the trial store is opened when the app starts")
        return self.storage
