"""`/api/studies`: submit, list, read, cancel, resume and delete studies (docs/api.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import domain, views
from service.api.deps import CONFLICT, DB, AppState, Auth, Id, Offset
from service.api.schemas import StudyList, StudyOut
from service.db import StudyRow
from service.state import State

router = APIRouter(prefix="/api/studies", tags=["studies"])


def study_header(state: State, s: Session, row: StudyRow) -> dict[str, Any]:
    """The study's header (`StudyHeader`), its progress from the snapshot cache."""
    spec = state.spec(row)
    summary = state.cache.summary(row.id, row.status, spec, s)
    return views.study_json(row, spec, summary.progress, summary.hypervolume,
                            summary.kendall_tau)


def study_out(state: State, s: Session, row: StudyRow) -> StudyOut:
    return StudyOut(**study_header(state, s, row), spec=row.spec)


@router.post("", status_code=201, response_model=StudyOut, dependencies=[Auth],
             responses=CONFLICT)
def submit_study(
    state: AppState, s: DB,
    doc: Annotated[dict[str, Any], Body(description="a clnas.study/1 document")],
) -> StudyOut:
    return study_out(state, s, domain.submit(state, s, doc))


@router.get("", response_model=StudyList)
def list_studies(
    state: AppState, s: DB, offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> StudyList:
    total = s.scalar(select(func.count()).select_from(StudyRow)) or 0
    rows = s.scalars(select(StudyRow).order_by(StudyRow.id.desc()).offset(offset).limit(limit))
    return StudyList(items=[StudyOut(**study_header(state, s, r)) for r in rows], total=total,
                     offset=offset, limit=limit)


@router.get("/{study_id}", response_model=StudyOut)
def get_study(study_id: Id, state: AppState, s: DB) -> StudyOut:
    return study_out(state, s, domain.study_row(s, study_id))


@router.post("/{study_id}/cancel", status_code=202, response_model=StudyOut,
             dependencies=[Auth], responses=CONFLICT)
def cancel_study(study_id: Id, state: AppState, s: DB) -> StudyOut:
    """202 at once: `cancelled` if it was queued, else `cancelling` until the supervisor's next
    pass stops its process (docs/api.md#run-lifecycle)."""
    return study_out(state, s, domain.cancel(state, s, study_id))


@router.post("/{study_id}/resume", response_model=StudyOut, dependencies=[Auth],
             responses=CONFLICT)
def resume_study(study_id: Id, state: AppState, s: DB) -> StudyOut:
    return study_out(state, s, domain.resume(s, study_id))


@router.delete("/{study_id}", status_code=204, dependencies=[Auth], responses=CONFLICT)
def delete_study(study_id: Id, state: AppState, s: DB) -> Response:
    domain.delete(state, s, study_id)
    return Response(status_code=204)

