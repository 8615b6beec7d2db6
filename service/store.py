"""Fast reads of a study's trials, for the REST API and the dashboard.

Optuna's storage API builds every trial through the ORM (and `best_trials` deep-copies them):
seconds per call at a few thousand trials. The service instead reads Optuna's tables with one
Core query per table (the table definitions and their meaning come from
`workers.optuna_compat`, the one module that touches Optuna internals), rebuilds
`FrozenTrial`s, and hands them to the same JSON views and Pareto/hypervolume code the API uses.
A snapshot is cached per study and reused while a cheap fingerprint of the study's rows is
unchanged.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.orm import Session

from service import promotion, views
from service.db import JobRow
from workers import optuna_compat as oc
from workers.optuna_compat import STUDIES, SYSTEM_ATTRS, TRIALS, USER_ATTRS, VALUES
from workers.study import StudySpec
from workers.tune import BASELINE_ATTR, baselines_study_name, tally


def _optuna_study_id(con: sa.Connection, name: str) -> int | None:
    return con.scalar(sa.select(STUDIES.c.study_id).where(STUDIES.c.study_name == name))


def fingerprint(con: sa.Connection, name: str) -> tuple[Any, ...]:
    """Changes whenever a trial is added, changes state, or gains or updates a user attribute
    (e.g. a running trial's learning curve): counts, states and attribute sizes."""
    sid = _optuna_study_id(con, name)
    if sid is None:
        return (None,)
    trials = con.execute(
        sa.select(sa.func.count(), sa.func.max(TRIALS.c.trial_id),
                  sa.func.count(TRIALS.c.datetime_complete),
                  sa.func.max(TRIALS.c.datetime_complete),
                  sa.func.sum(sa.case((TRIALS.c.state == TrialState.RUNNING, 1), else_=0)))
        .where(TRIALS.c.study_id == sid)
    ).one()
    attrs = con.execute(
        sa.select(sa.func.count(), sa.func.sum(sa.func.length(USER_ATTRS.c.value_json)))
        .select_from(USER_ATTRS.join(TRIALS, USER_ATTRS.c.trial_id == TRIALS.c.trial_id))
        .where(TRIALS.c.study_id == sid)
    ).one()
    return (sid, *trials, *attrs)


def load_trials(con: sa.Connection, name: str) -> list[FrozenTrial]:
    """Every trial of the Optuna study `name`, in number order, with
    values, user attributes and the constraint values; params and intermediate values are left
    out (nothing on the dashboard reads them)."""
    sid = _optuna_study_id(con, name)
    if sid is None:
        return []
    where = [TRIALS.c.study_id == sid]
    rows = con.execute(
        sa.select(TRIALS.c.trial_id, TRIALS.c.number, TRIALS.c.state, TRIALS.c.datetime_start,
                  TRIALS.c.datetime_complete).where(*where).order_by(TRIALS.c.number)
    ).all()
    ids = sa.select(TRIALS.c.trial_id).where(*where).scalar_subquery()
    values: dict[int, dict[int, float]] = {}
    for tid, objective, value, kind in con.execute(
        sa.select(VALUES.c.trial_id, VALUES.c.objective, VALUES.c.value, VALUES.c.value_type)
        .where(VALUES.c.trial_id.in_(ids))
    ):
        values.setdefault(tid, {})[objective] = oc.stored_value(value, kind)
    user: dict[int, dict[str, Any]] = {}
    for tid, key, raw in con.execute(
        sa.select(USER_ATTRS.c.trial_id, USER_ATTRS.c.key, USER_ATTRS.c.value_json)
        .where(USER_ATTRS.c.trial_id.in_(ids))
    ):
        user.setdefault(tid, {})[key] = oc.decode_attr(raw)
    system: dict[int, dict[str, Any]] = {}
    for tid, key, raw in con.execute(
        sa.select(SYSTEM_ATTRS.c.trial_id, SYSTEM_ATTRS.c.key, SYSTEM_ATTRS.c.value_json)
        .where(SYSTEM_ATTRS.c.trial_id.in_(ids),
               sa.or_(SYSTEM_ATTRS.c.key == oc.CONSTRAINTS_KEY,
                      SYSTEM_ATTRS.c.key.startswith(f"{oc.CONSTRAINTS_KEY}:", autoescape=True)))
    ):
        system.setdefault(tid, {})[key] = oc.decode_attr(raw)
    out = []
    for tid, num, state, start, complete in rows:
        vals = values.get(tid)
        out.append(FrozenTrial(
            number=num, trial_id=tid, state=TrialState[getattr(state, "name", state)],
            value=None, values=[vals[k] for k in sorted(vals)] if vals else None,
            datetime_start=_utc(start), datetime_complete=_utc(complete), params={},
            distributions={},
            user_attrs=user.get(tid, {}), system_attrs=system.get(tid, {}),
            intermediate_values={},
        ))
    return out


def _utc(stored: datetime | None) -> datetime | None:
    """Optuna stores naive UTC (and its storage API hands out naive local time, which is
    ambiguous in the hour a DST change repeats): aware UTC here."""
    if stored is None:
        return None
    return stored.replace(tzinfo=UTC)


def pareto_front(spec: StudySpec, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Optuna's `best_trials` (feasible trials only), computed on already loaded trials."""
    directions = [StudyDirection.MAXIMIZE if m == "max" else StudyDirection.MINIMIZE
                  for m in spec.modes]
    return oc.pareto_front(trials, directions)


def progress(spec: StudySpec, trials: list[FrozenTrial], front: list[FrozenTrial],
             baselines: list[FrozenTrial]) -> dict[str, Any]:
    """`GET /api/studies/{id}`'s `progress`: `workers.tune.study_progress`'s counts over
    already loaded trials."""
    p = tally(spec, trials, baselines)
    p.front_size = len(front)
    return p.to_dict()


@dataclass(frozen=True)
class Summary:
    """What the studies list shows of a study."""

    key: tuple[Any, ...]
    progress: dict[str, Any]
    hypervolume: float | None
    kendall_tau: dict[str, Any] | None  # proxy vs full accuracy of promoted trials


class Snapshot:
    """Everything the study view draws, computed from one read of the study's trials."""

    def __init__(self, key: tuple[Any, ...], spec: StudySpec, trials: list[FrozenTrial],
                 baselines: list[FrozenTrial], jobs: list[JobRow]):
        front = pareto_front(spec, trials)
        self.key, self.spec, self.trials = key, spec, trials
        self.front = {t.number for t in front}
        self.promoted = promotion.full_by_trial(jobs)
        self.summary = Summary(key, progress(spec, trials, front, baselines),
                               views.hypervolume(spec, front, trials),
                               promotion.study_kendall(jobs, trials, spec.metrics))
        self.baseline_trials = baselines  # another study: its numbers are not ours
        self._compact: dict[int, dict[str, Any]] = {}

    @cached_property
    def baselines(self) -> list[dict[str, Any]]:
        return [views.trial_json(t, self.spec.metrics) for t in self.baseline_trials]

    def trial(self, number: int) -> FrozenTrial | None:
        if 0 <= number < len(self.trials) and self.trials[number].number == number:
            return self.trials[number]
        return next((t for t in self.trials if t.number == number), None)

    @cached_property
    def history(self) -> list[dict[str, Any]]:
        """Hypervolume after each trial (the one part that grows faster than linearly)."""
        return views.hypervolume_history(self.spec, self.trials)

    def _json(self, t: FrozenTrial, *, compact: bool) -> dict[str, Any]:
        # the routes serve it through the API's response model (`TrialOut`), like the REST API
        return views.trial_json(t, self.spec.metrics, compact=compact, front=self.front,
                                full=self.promoted.get(t.number))

    def compact(self, t: FrozenTrial) -> dict[str, Any]:
        doc = self._compact.get(t.number)
        if doc is None:
            doc = self._compact[t.number] = self._json(t, compact=True)
        return doc

    def full(self, number: int) -> dict[str, Any] | None:
        t = self.trial(number)
        return None if t is None else self._json(t, compact=False)


class SnapshotCache:
    """Per study, the latest snapshot (for the few most recently viewed studies) and summary
    (for every study), rebuilt when the study's status or rows change."""

    def __init__(self, engine: sa.Engine, keep: int = 8):
        self.engine = engine
        self.keep = keep
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()
        self._summaries: dict[int, Summary] = {}

    def _key(self, con: sa.Connection, status: str, spec: StudySpec,
             jobs: list[JobRow]) -> tuple[Any, ...]:
        # promotions change trials that finished long ago: their jobs are part of the key
        promoted = tuple((j.id, j.status, (j.result or {}).get("top1")) for j in jobs)
        return (status, spec.name, fingerprint(con, spec.name),
                fingerprint(con, baselines_study_name(spec.name)), promoted)

    @contextmanager
    def _session(self, s: Session | None) -> Iterator[Session]:
        """The caller's session (a request's: one connection per request, so concurrent
        requests never hold one pooled connection while waiting for another), else our own."""
        if s is not None:
            yield s
            return
        with Session(self.engine, expire_on_commit=False) as own:
            yield own

    def get(self, study_id: int, status: str, spec: StudySpec,
            s: Session | None = None) -> Snapshot:
        with self._session(s) as ses:
            con = ses.connection()
            jobs = promotion.train_jobs(ses, study_id)
            key = self._key(con, status, spec, jobs)
            with self._lock:
                cached = self._snapshots.get(study_id)
                if cached is not None and cached.key == key:
                    self._snapshots.move_to_end(study_id)
                    return cached
            trials = load_trials(con, spec.name)
            baselines = [t for t in load_trials(con, baselines_study_name(spec.name))
                         if BASELINE_ATTR in t.user_attrs]
        snap = Snapshot(key, spec, trials, baselines, jobs)
        with self._lock:
            self._snapshots[study_id] = snap
            self._snapshots.move_to_end(study_id)
            while len(self._snapshots) > self.keep:
                self._snapshots.popitem(last=False)
            self._summaries[study_id] = snap.summary
        return snap

    def summary(self, study_id: int, status: str, spec: StudySpec,
                s: Session | None = None) -> Summary:
        with self._session(s) as ses:
            jobs = promotion.train_jobs(ses, study_id)
            key = self._key(ses.connection(), status, spec, jobs)
            with self._lock:
                cached = self._summaries.get(study_id)
            if cached is not None and cached.key == key:
                return cached
            return self.get(study_id, status, spec, ses).summary

    def forget(self, study_id: int) -> None:
        with self._lock:
            self._snapshots.pop(study_id, None)
            self._summaries.pop(study_id, None)
