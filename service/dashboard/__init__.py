"""The dashboard (issue 6): a static single-page app at `/` over the REST API, plus three
read-only endpoints under `/api/dashboard` that serve what it draws from one fast read of a
study's trials (see `service/store.py`; reference: docs/api.md).

Static assets ship as package data (`static/`); Plotly's JS comes from the installed `plotly`
wheel, so the dashboard works offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import domain
from service.api.deps import AppState, Id, Number
from service.api.schemas import DashboardSnapshot, DashboardStudies, TrialOut
from service.api.studies import study_header
from service.db import StudyRow
from service.errors import NotFound
from service.state import State

STATIC = Path(__file__).parent / "static"
router = APIRouter(prefix="/api/dashboard", tags=["dashboard"])


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _study_row(state: State, s: Session, study_id: int) -> StudyRow:
    try:
        return domain.study_row(s, study_id)
    except NotFound:
        state.cache.forget(study_id)  # deleted by another replica: drop what we kept of it
        raise


@router.get("/studies", response_model=DashboardStudies)
def list_studies(
    state: AppState, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The studies list: every study's header (as in `GET /api/studies`, newest first)."""
    with state.sessions() as s:
        rows = list(s.scalars(select(StudyRow).order_by(StudyRow.id.desc())))
        items = [study_header(state, s, row) for row in rows[offset: offset + limit]]
    return {"items": items, "total": len(rows), "offset": offset, "limit": limit}


@router.get("/studies/{study_id}", response_model=DashboardSnapshot)
def study_snapshot(
    state: AppState, study_id: Id,
    since: Annotated[int, Query(ge=0, description="only trials numbered >= since")] = 0,
) -> dict[str, Any]:
    """The study view's data: header, compact trials numbered >= `since`, the front's trial
    numbers, hypervolume history and baselines; `version` changes whenever any of it does."""
    with state.sessions() as s:
        row = _study_row(state, s, study_id)
        snap = domain.snapshot(state, s, row)
        header = study_header(state, s, row)
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
def trial_detail(state: AppState, study_id: Id, number: Number) -> dict[str, Any]:
    """One trial in full (arch and curve), as `GET /api/studies/{id}/trials/{number}`."""
    with state.sessions() as s:
        snap = domain.snapshot(state, s, _study_row(state, s, study_id))
    trial = snap.full(number)
    if trial is None:
        raise NotFound(f"trial {number} not found in study {snap.spec.name!r}")
    return trial


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
