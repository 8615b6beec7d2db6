"""The dashboard (issue 6): a static single-page app at `/` over the REST API, plus three
read-only endpoints under `/api/dashboard` that serve what it draws from one fast read of a
study's trials (see `service/store.py`; reference: docs/API.md).

Static assets ship as package data (`static/`); Plotly's JS comes from the installed `plotly`
wheel, so the dashboard works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import views
from service.api.schemas import DashboardSnapshot, DashboardStudies, TrialOut
from service.db import StudyRow
from service.store import SnapshotCache, Summary
from workers.study import StudySpec

STATIC = Path(__file__).parent / "static"
Id = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="study id")]
Number = Annotated[int, PathParam(ge=0, le=2**31 - 1, description="trial number")]
router = APIRouter(prefix="/api/dashboard", tags=["dashboard"])


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _cache(request: Request) -> SnapshotCache:
    cache: SnapshotCache = request.app.state.clnas.cache
    return cache


def _study(request: Request, s: Session, study_id: int) -> tuple[StudyRow, StudySpec]:
    row = s.get(StudyRow, study_id)
    if row is None:
        _cache(request).forget(study_id)
        raise HTTPException(404, detail=f"study {study_id} not found")
    return row, request.app.state.clnas.spec(row)


def _header(row: StudyRow, spec: StudySpec, summary: Summary) -> dict[str, Any]:
    """The fields of the API's Study object (without `spec`)."""
    return {
        "id": row.id, "name": row.name, "status": row.status, "dataset": spec.dataset,
        "synthetic": spec.dataset == "synthetic",
        "space": spec.space if isinstance(spec.space, str) else "inline",
        "objectives": list(spec.objectives), "metrics": spec.metrics,
        "directions": list(spec.modes), "n_trials": spec.search.n_trials,
        "created_at": views.iso(row.created_at), "started_at": views.iso(row.started_at),
        "finished_at": views.iso(row.finished_at), "error": row.error,
        "progress": summary.progress, "hypervolume": summary.hypervolume,
        "kendall_tau": summary.kendall_tau,
    }


@router.get("/studies", response_model=DashboardStudies)
def list_studies(
    request: Request, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The studies list: every study's header (as in `GET /api/studies`, newest first)."""
    state = request.app.state.clnas
    with state.sessions() as s:
        rows = list(s.scalars(select(StudyRow).order_by(StudyRow.id.desc())))
        items = []
        for row in rows[offset: offset + limit]:
            spec = state.spec(row)
            items.append(_header(row, spec, _cache(request).summary(row.id, row.status, spec, s)))
    return {"items": items, "total": len(rows), "offset": offset, "limit": limit}


@router.get("/studies/{study_id}", response_model=DashboardSnapshot)
def study_snapshot(
    request: Request, study_id: Id,
    since: Annotated[int, Query(ge=0, description="only trials numbered >= since")] = 0,
) -> dict[str, Any]:
    """The study view's data: header, compact trials numbered >= `since`, the front's trial
    numbers, hypervolume history and baselines; `version` changes whenever any of it does."""
    with request.app.state.clnas.sessions() as s:
        row, spec = _study(request, s, study_id)
        snap = _cache(request).get(row.id, row.status, spec, s)
        header = _header(row, spec, snap.summary)
    return {
        "study": header,
        "version": repr(snap.key),
        "total": len(snap.trials),
        "trials": [snap.compact(t) for t in snap.trials if t.number >= since],
        "front": sorted(snap.front),
        "hypervolume_history": snap.history,
        "baselines": snap.baselines,
    }


@router.get("/studies/{study_id}/trials/{number}", response_model=TrialOut)
def trial_detail(request: Request, study_id: Id, number: Number) -> dict[str, Any]:
    """One trial in full (arch and curve), as `GET /api/studies/{id}/trials/{number}`."""
    with request.app.state.clnas.sessions() as s:
        row, spec = _study(request, s, study_id)
        trial = _cache(request).get(row.id, row.status, spec, s).full(number)
    if trial is not None:
        return trial
    raise HTTPException(404, detail=f"trial {number} not found in study {spec.name!r}")


def mount(app: FastAPI) -> None:
    """Serve the dashboard at `/`, its assets under `/dashboard/`, its data under
    `/api/dashboard/`."""
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/dashboard/plotly.min.js", include_in_schema=False)
    def plotly() -> FileResponse:
        return FileResponse(plotly_js(), media_type="text/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    app.mount("/dashboard", StaticFiles(directory=STATIC), name="dashboard")
