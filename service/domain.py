"""Operations that touch both our tables and Optuna's: submit, cancel, resume and delete a
study, promote a trial to full training, cancel a job. Routes call these; they raise
`service.errors` exceptions, commit through the session they are given, and know nothing of
HTTP. Reference: docs/api.md."""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import lifecycle, promotion, views
from service.db import ACTIVE, ExportRow, JobRow, RunRow, StudyRow
from service.errors import Conflict, NotFound
from service.state import State
from service.store import Snapshot
from workers.study import StudySpec, parse_study
from workers.tune import REJECTED_ATTR, baselines_study_name, close_stale_trials


def study_row(s: Session, study_id: int) -> StudyRow:
    row = s.get(StudyRow, study_id)
    if row is None:
        raise NotFound(f"study {study_id} not found")
    return row


def job_row(s: Session, job_id: int) -> JobRow:
    job = s.get(JobRow, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def snapshot(state: State, s: Session, row: StudyRow) -> Snapshot:
    return state.cache.get(row.id, row.status, state.spec(row), s)


def trial(snap: Snapshot, number: int) -> FrozenTrial:
    t = snap.trial(number)
    if t is None:
        raise NotFound(f"trial {number} not found in study {snap.spec.name!r}")
    return t


def trained_trial(snap: Snapshot, number: int, use: str) -> FrozenTrial:
    """A completed, feasible trial: the only ones exported or promoted (`use`)."""
    t = trial(snap, number)
    if t.state != TrialState.COMPLETE or REJECTED_ATTR in t.user_attrs:
        rejected = " (rejected)" if REJECTED_ATTR in t.user_attrs else ""
        raise Conflict(f"trial {number} is {t.state.name}{rejected}; only trained trials are "
                       f"{use}")
    return t


def _optuna_has(state: State, name: str) -> bool:
    try:
        state.optuna.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def submit(state: State, s: Session, doc: dict[str, Any]) -> StudyRow:
    spec = parse_study(doc)  # ArchError names the path
    if s.scalar(select(StudyRow).where(StudyRow.name == spec.name)) is not None:
        raise Conflict(f"a study named {spec.name!r} already exists")
    for name in (spec.name, baselines_study_name(spec.name)):
        if _optuna_has(state, name):
            raise Conflict(f"the trial store already holds a study named {name!r} (run by "
                           "`clnas search`?); choose another name")
    row = StudyRow(name=spec.name,
                   run=RunRow(kind="search", status="queued", spec=spec.model_dump(mode="json")))
    s.add(row)
    try:
        s.commit()
    except IntegrityError:  # the same name submitted concurrently: the unique index
        s.rollback()
        raise Conflict(f"a study named {spec.name!r} already exists") from None
    return row


def _changed(s: Session, run: RunRow) -> None:
    """Commit a lifecycle change and read the run back (the UPDATE bypassed the session)."""
    s.commit()
    s.refresh(run)


def cancel(state: State, s: Session, study_id: int) -> StudyRow:
    """Mark the study's run and return at once (docs/api.md#run-lifecycle): a queued study is
    `cancelled`; a running one `cancelling` until the runner's next pass stops its process."""
    row = study_row(s, study_id)
    status = lifecycle.cancel(s, row.run_id)
    if status is None:
        raise Conflict(f"study {study_id} is {row.status}, not running")
    _changed(s, row.run)
    if status == "cancelled":  # no process: close what a killed earlier run left RUNNING
        for name in (row.name, baselines_study_name(row.name)):
            with contextlib.suppress(KeyError):
                close_stale_trials(state.optuna, name)
    return row


def resume(s: Session, study_id: int) -> StudyRow:
    row = study_row(s, study_id)
    if not lifecycle.resume(s, row.run_id):
        raise Conflict(f"study {study_id} is already {row.status}")
    _changed(s, row.run)
    return row


def delete(state: State, s: Session, study_id: int) -> None:
    row = study_row(s, study_id)
    if row.status in ACTIVE:
        raise Conflict(f"study {study_id} is {row.status}; cancel it first")
    active = [j.id for j in promotion.train_jobs(s, study_id) if j.status in ACTIVE]
    if active:
        raise Conflict(f"study {study_id} has train jobs under way "
                       f"({', '.join(map(str, active))}); cancel them first")
    # the trials first: if that fails, the study row (and its name) is still there
    for name in (row.name, baselines_study_name(row.name)):
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=name, storage=state.optuna)
    s.delete(row)
    s.commit()
    state.forget(study_id)


def promote(state: State, s: Session, study_id: int, number: int,
            request: dict[str, Any]) -> JobRow:
    """Queue a full training of one trial's design (docs/design.md §6); `request` is
    `PromoteIn`'s."""
    trained_trial(snapshot(state, s, study_row(s, study_id)), number, "promoted")
    busy = s.scalar(select(JobRow.id).where(
        JobRow.study_id == study_id, JobRow.trial_number == number,
        JobRow.kind == promotion.TRAIN, JobRow.status.in_(ACTIVE)))
    if busy is not None:
        raise Conflict(f"trial {number} already has train job {busy} queued or running")
    payload = promotion.train_spec(request, state.settings.data_dir)
    payload["run"] = secrets.token_hex(4)  # its own run folder: SQLite may reuse a deleted id
    job = JobRow(study_id=study_id, trial_number=number,
                 run=RunRow(kind=promotion.TRAIN, status="queued", spec=payload))
    s.add(job)
    s.commit()
    return job


def export_trial(state: State, s: Session, study_id: int, number: int,
                 fmt: str) -> tuple[StudySpec, dict[str, Any]]:
    """One trained trial as a `clnas.arch/1` document with provenance; the export is recorded."""
    row = study_row(s, study_id)
    snap = snapshot(state, s, row)
    doc = views.arch_export(row.id, snap.spec, trained_trial(snap, number, "exported"))
    s.add(ExportRow(study_id=row.id, trial_number=number, format=fmt,
                    sha256=views.digest(doc)))
    s.commit()
    return snap.spec, doc


def export_front(state: State, s: Session, study_id: int) -> tuple[StudySpec, dict[str, Any]]:
    """The Pareto front as a `clnas.bundle/1` document (number order); the export is recorded."""
    row = study_row(s, study_id)
    snap = snapshot(state, s, row)
    spec = snap.spec
    bundle = {
        "format": "clnas.bundle/1",
        "study": spec.name,
        "provenance": views.provenance(row.id, spec),
        "archs": [views.arch_export(row.id, spec, t) for t in snap.trials
                  if t.number in snap.front],
    }
    s.add(ExportRow(study_id=row.id, trial_number=None, format="json",
                    sha256=views.digest(bundle)))
    s.commit()
    return spec, bundle


def cancel_job(s: Session, job_id: int) -> JobRow:
    job = job_row(s, job_id)
    if job.kind != promotion.TRAIN:
        raise Conflict(f"job {job_id} is a {job.kind} job; cancel its study")
    if lifecycle.cancel(s, job.run_id) is None:
        raise Conflict(f"job {job_id} is {job.status}, not running")
    _changed(s, job.run)
    return job
