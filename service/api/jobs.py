"""Train jobs: promote a trial to full training, list, read and cancel jobs (docs/api.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query
from sqlalchemy import func, select

from service import domain, views
from service.api.deps import DB, AppState, Auth, Id, JobId, Number, Offset
from service.api.schemas import JobList, JobOut, PromoteIn
from service.db import JobRow

router = APIRouter(tags=["jobs"])


@router.post("/api/studies/{study_id}/trials/{number}/promote", status_code=202,
             response_model=JobOut, dependencies=[Auth],
             responses={404: {"description": "unknown study or trial"},
                        409: {"description": "the trial is not a completed, feasible one, "
                              "or a train job of it is queued or running"}})
def promote_trial(study_id: Id, number: Number, state: AppState, s: DB,
                  body: Annotated[PromoteIn, Body()] = PromoteIn()) -> JobOut:  # noqa: B008
    job = domain.promote(state, s, study_id, number, body.model_dump())
    return JobOut(**views.job_json(job))


@router.get("/api/jobs", response_model=JobList)
def list_jobs(
    s: DB,
    study_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobList:
    query = select(JobRow)
    if study_id is not None:
        query = query.where(JobRow.study_id == study_id)
    total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = s.scalars(query.order_by(JobRow.id.desc()).offset(offset).limit(limit))
    return JobList(items=[JobOut(**views.job_json(j)) for j in rows], total=total,
                   offset=offset, limit=limit)


@router.get("/api/jobs/{job_id}", response_model=JobOut,
            responses={404: {"description": "unknown job"}})
def get_job(job_id: JobId, s: DB) -> JobOut:
    return JobOut(**views.job_json(domain.job_row(s, job_id)))


@router.post("/api/jobs/{job_id}/cancel", status_code=202, response_model=JobOut,
             dependencies=[Auth],
             responses={404: {"description": "unknown job"},
                        409: {"description": "the job is not under way"}})
def cancel_job(job_id: JobId, s: DB) -> JobOut:
    """202 at once, like a study's cancel (docs/api.md#run-lifecycle)."""
    return JobOut(**views.job_json(domain.cancel_job(s, job_id)))
