"""The REST control plane: `create_app(settings)` (issue 5). Reference: docs/API.md."""

from __future__ import annotations

import contextlib
import hmac
import importlib
import importlib.util
import json
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

import optuna
import yaml
from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from optuna.trial import TrialState
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from search_space import ArchError, load_arch, zoo_names
from search_space.arch import parse_arch
from search_space.spaces import load_space, space_names
from service import promotion, views
from service.api.limits import AnalysisSlots, BodyLimit
from service.api.schemas import (
    BaselinesOut,
    CostIn,
    CostOut,
    FrontOut,
    HealthOut,
    HvOut,
    HvPoint,
    JobList,
    JobOut,
    KendallOut,
    Progress,
    PromoteIn,
    SpaceOut,
    StateName,
    StudyList,
    StudyOut,
    TrialList,
    TrialOut,
    ZooOut,
)
from service.db import (
    ACTIVE,
    JobRow,
    StudyRow,
    TokenRow,
    hash_token,
    make_engine,
    migrate,
    sessions,
)
from service.db import ExportRow as ExportRecord
from service.runner import StudyRunner
from service.settings import Settings
from service.store import Snapshot, SnapshotCache
from workers.study import StudySpec, parse_study
from workers.tune import (
    REJECTED_ATTR,
    baselines_study_name,
    open_storage,
)

VERSION = views.versions()["clnas"]
Id = Annotated[int, Path(ge=1, le=2**31 - 1, description="study id")]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1, description="job id")]
Number = Annotated[int, Path(ge=0, le=2**31 - 1, description="trial number")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


# -- the app -------------------------------------------------------------------------------
class State:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.engine = make_engine(settings.db_url)
        self.sessions = sessions(self.engine)
        self.cache = SnapshotCache(self.engine)  # fast reads of studies' trials
        self.storage: optuna.storages.RDBStorage | None = None
        self.runner: StudyRunner | None = None
        self.specs: dict[int, StudySpec] = {}
        self.lock = threading.Lock()
        self.zoo: list[dict[str, Any]] | None = None
        self.analyses = AnalysisSlots(settings.max_analyses)

    def spec(self, row: StudyRow) -> StudySpec:
        with self.lock:
            spec = self.specs.get(row.id)
            if spec is None or spec.name != row.name:
                spec = StudySpec.model_validate(row.spec)
                self.specs[row.id] = spec
            return spec

    @property
    def optuna(self) -> optuna.storages.RDBStorage:
        assert self.storage is not None
        return self.storage


def _error_loc(path: str) -> list[str | int]:
    """`stages[3].g1` -> ["stages", 3, "g1"]."""
    out: list[str | int] = []
    for part in path.replace("]", "").split("."):
        name, *idx = part.split("[")
        if name and name != "<root>":
            out.append(name)
        out += [int(i) for i in idx if i.isdigit()]
    return out


def arch_error_422(exc: ArchError, prefix: list[str | int]) -> HTTPException:
    detail = [
        {"loc": [*prefix, *_error_loc(p)], "msg": m, "type": "value_error"}
        for p, m in exc.problems
    ]
    return HTTPException(422, detail=detail)


bearer = HTTPBearer(auto_error=False)
_ERROR_BODY = {"application/json": {"schema": {
    "type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"],
}}}


def _db(request: Request) -> Iterator[Session]:
    with request.app.state.clnas.sessions() as s:
        yield s


DB = Annotated[Session, Depends(_db)]


def require_token(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    s: DB,
) -> None:
    """Every mutating endpoint: the configured token or one made by `clnas token create`."""
    token = request.app.state.clnas.settings.token
    has_db_tokens = s.scalar(select(func.count()).select_from(TokenRow)) or 0
    if not token and not has_db_tokens:
        return
    given = creds.credentials if creds is not None else ""
    if token and hmac.compare_digest(given.encode(), token.encode()):
        return
    if given and s.scalar(select(TokenRow).where(TokenRow.sha256 == hash_token(given))):
        return
    raise HTTPException(
        401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
    )


Auth = Depends(require_token)
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "conflicts with the current state", "content": _ERROR_BODY}
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = (settings or Settings.from_env()).resolved()
    state = State(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(settings.db_url)
        state.storage = open_storage(settings.db_url)  # creates / upgrades Optuna's tables
        if settings.run_studies:
            state.runner = StudyRunner(settings, state.sessions)
            state.runner.start()
        try:
            yield
        finally:
            if state.runner is not None:
                state.runner.stop()
            state.engine.dispose()

    app = FastAPI(
        title="clnas",
        version=VERSION,
        description="Architecture search over channel-local CNN blocks. See docs/API.md.",
        lifespan=lifespan,
    )
    app.state.clnas = state
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(ArchError)
    async def _arch_error(_: Request, exc: ArchError) -> JSONResponse:
        e = arch_error_422(exc, ["body"])
        return JSONResponse({"detail": e.detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and request.method in ("POST", "PUT", "PATCH"):
            # FastAPI answers 400 for a body it cannot decode at all (bytes that are not
            # UTF-8); like every other invalid input it is a 422 naming the field.
            detail = [{"loc": ["body"], "msg": "the request body is not valid UTF-8 JSON",
                       "type": "json_invalid"}]
            return JSONResponse({"detail": detail}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(e.get("loc", [])), "msg": str(e.get("msg", "")),
             "type": str(e.get("type", "value_error"))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(promotion.FieldError)
    async def _field_error(_: Request, exc: promotion.FieldError) -> JSONResponse:
        detail = [{"loc": exc.loc, "msg": exc.msg, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    def get_row(s: Session, study_id: int) -> StudyRow:
        row = s.get(StudyRow, study_id)
        if row is None:
            raise HTTPException(404, detail=f"study {study_id} not found")
        return row

    def study_out(s: Session, row: StudyRow, *, with_spec: bool = False) -> StudyOut:
        spec = state.spec(row)
        summary = state.cache.summary(row.id, row.status, spec, s)
        tau = summary.kendall_tau
        return StudyOut(
            id=row.id, name=row.name, status=row.status,
            dataset=spec.dataset, synthetic=spec.dataset == "synthetic",
            space=spec.space if isinstance(spec.space, str) else "inline",
            objectives=list(spec.objectives), metrics=spec.metrics,
            directions=list(spec.modes), n_trials=spec.search.n_trials,
            created_at=views.iso(row.created_at) or "", started_at=views.iso(row.started_at),
            finished_at=views.iso(row.finished_at), error=row.error,
            progress=Progress(**summary.progress), hypervolume=summary.hypervolume,
            kendall_tau=None if tau is None else KendallOut(**tau),
            spec=row.spec if with_spec else None,
        )

    # -- studies ---------------------------------------------------------------------------
    @app.post("/api/studies", status_code=201, response_model=StudyOut, dependencies=[Auth],
              responses=CONFLICT,
              tags=["studies"])
    def submit_study(
        s: DB,
        doc: Annotated[dict[str, Any], Body(description="a clnas.study/1 document")],
    ) -> StudyOut:
        spec = parse_study(doc)  # ArchError -> 422 naming the path
        if s.scalar(select(StudyRow).where(StudyRow.name == spec.name)) is not None:
            raise HTTPException(409, detail=f"a study named {spec.name!r} already exists")
        for name in (spec.name, baselines_study_name(spec.name)):
            if _optuna_has(name):
                raise HTTPException(
                    409, detail=f"the trial store already holds a study named {name!r} "
                    "(run by `clnas search`?); choose another name"
                )
        row = StudyRow(name=spec.name, spec=spec.model_dump(mode="json"), status="queued")
        s.add(row)
        try:
            s.commit()
        except IntegrityError:  # the same name submitted concurrently: the unique index
            s.rollback()
            raise HTTPException(409, detail=f"a study named {spec.name!r} already exists"
                                ) from None
        return study_out(s, row, with_spec=True)

    def _optuna_has(name: str) -> bool:
        try:
            state.optuna.get_study_id_from_name(name)
        except KeyError:
            return False
        return True

    @app.get("/api/studies", response_model=StudyList, tags=["studies"])
    def list_studies(
        s: DB, offset: Offset = 0, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> StudyList:
        total = s.scalar(select(func.count()).select_from(StudyRow)) or 0
        rows = s.scalars(select(StudyRow).order_by(StudyRow.id.desc()).offset(offset).limit(limit))
        return StudyList(items=[study_out(s, r) for r in rows], total=total, offset=offset,
                         limit=limit)

    @app.get("/api/studies/{study_id}", response_model=StudyOut, tags=["studies"])
    def get_study(study_id: Id, s: DB) -> StudyOut:
        return study_out(s, get_row(s, study_id), with_spec=True)

    @app.post("/api/studies/{study_id}/cancel", response_model=StudyOut, dependencies=[Auth],
              responses=CONFLICT,
              tags=["studies"])
    def cancel_study(study_id: Id, s: DB) -> StudyOut:
        row = get_row(s, study_id)
        if row.status not in ACTIVE:
            raise HTTPException(409, detail=f"study {study_id} is {row.status}, not running")
        row.status = "cancelled"
        row.finished_at = views_now()
        s.commit()
        if state.runner is not None:
            state.runner.cancel(study_id)
        from workers.tune import close_stale_trials

        spec = state.spec(row)
        for name in (spec.name, baselines_study_name(spec.name)):
            close_stale_trials(state.optuna, name)
        return study_out(s, row, with_spec=True)

    @app.post("/api/studies/{study_id}/resume", response_model=StudyOut, dependencies=[Auth],
              responses=CONFLICT,
              tags=["studies"])
    def resume_study(study_id: Id, s: DB) -> StudyOut:
        row = get_row(s, study_id)
        if row.status in ACTIVE:
            raise HTTPException(409, detail=f"study {study_id} is already {row.status}")
        row.status, row.error, row.finished_at = "queued", None, None
        s.commit()
        return study_out(s, row, with_spec=True)

    @app.delete("/api/studies/{study_id}", status_code=204, dependencies=[Auth],
                responses=CONFLICT,
                tags=["studies"])
    def delete_study(study_id: Id, s: DB) -> Response:
        row = get_row(s, study_id)
        if row.status in ACTIVE:
            raise HTTPException(409, detail=f"study {study_id} is {row.status}; cancel it first")
        active = [j.id for j in promotion.train_jobs(s, study_id) if j.status in ACTIVE]
        if active:
            raise HTTPException(409, detail=f"study {study_id} has train jobs under way "
                                f"({', '.join(map(str, active))}); cancel them first")
        # the trials first: if that fails, the study row (and its name) is still there
        for n in (row.name, baselines_study_name(row.name)):
            with contextlib.suppress(KeyError):
                optuna.delete_study(study_name=n, storage=state.optuna)
        s.delete(row)
        s.commit()
        with state.lock:
            state.specs.pop(study_id, None)
        state.cache.forget(study_id)
        return Response(status_code=204)

    # -- trials ----------------------------------------------------------------------------
    @app.get("/api/studies/{study_id}/trials", response_model=TrialList, tags=["trials"])
    def list_trials(
        study_id: Id,
        s: DB,
        state_: Annotated[StateName | None, Query(alias="state")] = None,
        rejected: bool | None = None,
        offset: Offset = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        compact: bool = False,
    ) -> TrialList:
        snap = snapshot(s, get_row(s, study_id))
        spec, trials = snap.spec, snap.trials
        if state_ is not None:
            trials = [t for t in trials if t.state.name == state_]
        if rejected is not None:
            trials = [t for t in trials if (REJECTED_ATTR in t.user_attrs) == rejected]
        page = trials[offset: offset + limit]  # in number order
        return TrialList(
            items=[TrialOut(**views.trial_json(t, spec.metrics, compact=compact,
                                               front=snap.front, full=snap.promoted.get(t.number)))
                   for t in page],
            total=len(trials), offset=offset, limit=limit,
        )

    def snapshot(s: Session, row: StudyRow) -> Snapshot:
        return state.cache.get(row.id, row.status, state.spec(row), s)

    def _trial(snap: Snapshot, number: int) -> optuna.trial.FrozenTrial:
        t = snap.trial(number)
        if t is None:
            raise HTTPException(404, detail=f"trial {number} not found in study "
                                f"{snap.spec.name!r}")
        return t

    @app.get("/api/studies/{study_id}/trials/{number}", response_model=TrialOut,
             tags=["trials"])
    def get_trial(study_id: Id, number: Number, s: DB) -> TrialOut:
        snap = snapshot(s, get_row(s, study_id))
        return TrialOut(**views.trial_json(_trial(snap, number), snap.spec.metrics,
                                           front=snap.front, full=snap.promoted.get(number)))

    @app.get("/api/studies/{study_id}/front", response_model=FrontOut, tags=["trials"])
    def get_front(study_id: Id, s: DB) -> FrontOut:
        snap = snapshot(s, get_row(s, study_id))
        spec = snap.spec
        front = [t for t in snap.trials if t.number in snap.front]  # Optuna's best_trials
        return FrontOut(
            metrics=spec.metrics, directions=list(spec.modes),
            trials=[TrialOut(**views.trial_json(t, spec.metrics, front=snap.front,
                                                full=snap.promoted.get(t.number)))
                    for t in front],
        )

    @app.get("/api/studies/{study_id}/baselines", response_model=BaselinesOut, tags=["trials"])
    def get_baselines(study_id: Id, s: DB) -> BaselinesOut:
        snap = snapshot(s, get_row(s, study_id))
        return BaselinesOut(items=[TrialOut(**b) for b in snap.baselines])

    @app.get("/api/studies/{study_id}/hypervolume", response_model=HvOut, tags=["trials"])
    def get_hypervolume(study_id: Id, s: DB) -> HvOut:
        snap = snapshot(s, get_row(s, study_id))
        return HvOut(points=[HvPoint(**p) for p in snap.history])

    # -- promotion and jobs ------------------------------------------------------------------
    @app.post("/api/studies/{study_id}/trials/{number}/promote", status_code=202,
              response_model=JobOut, dependencies=[Auth], tags=["jobs"],
              responses={404: {"description": "unknown study or trial"},
                         409: {"description": "the trial is not a completed, feasible one, "
                               "or a train job of it is queued or running"}})
    def promote_trial(study_id: Id, number: Number, s: DB,
                      body: Annotated[PromoteIn, Body()] = PromoteIn()) -> JobOut:  # noqa: B008
        row = get_row(s, study_id)
        t = _trial(snapshot(s, row), number)
        if t.state != TrialState.COMPLETE or REJECTED_ATTR in t.user_attrs:
            raise HTTPException(
                409, detail=f"trial {number} is {t.state.name}"
                + (" (rejected)" if REJECTED_ATTR in t.user_attrs else "")
                + "; only trained trials are promoted",
            )
        busy = s.scalar(select(JobRow.id).where(
            JobRow.study_id == study_id, JobRow.trial_number == number, JobRow.kind == "train",
            JobRow.status.in_(ACTIVE)))
        if busy is not None:
            raise HTTPException(409, detail=f"trial {number} already has train job {busy} "
                                "queued or running")
        payload = promotion.train_spec(body.model_dump(), settings.data_dir)
        # its own run folder: SQLite may hand a deleted job's id out again
        payload["run"] = secrets.token_hex(4)
        job = JobRow(study_id=study_id, kind="train", status="queued", trial_number=number,
                     payload=payload)
        s.add(job)
        s.commit()
        return JobOut(**views.job_json(job))

    def get_job_row(s: Session, job_id: int) -> JobRow:
        job = s.get(JobRow, job_id)
        if job is None:
            raise HTTPException(404, detail=f"job {job_id} not found")
        return job

    @app.get("/api/jobs", response_model=JobList, tags=["jobs"])
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

    @app.get("/api/jobs/{job_id}", response_model=JobOut, tags=["jobs"],
             responses={404: {"description": "unknown job"}})
    def get_job(job_id: JobId, s: DB) -> JobOut:
        return JobOut(**views.job_json(get_job_row(s, job_id)))

    @app.post("/api/jobs/{job_id}/cancel", response_model=JobOut, dependencies=[Auth],
              tags=["jobs"], responses={404: {"description": "unknown job"},
                                        409: {"description": "the job is not under way"}})
    def cancel_job(job_id: JobId, s: DB) -> JobOut:
        job = get_job_row(s, job_id)
        if job.kind != "train":
            raise HTTPException(409, detail=f"job {job_id} is a {job.kind} job; cancel its study")
        if job.status not in ACTIVE:
            raise HTTPException(409, detail=f"job {job_id} is {job.status}, not running")
        job.status, job.finished_at, job.pid = "cancelled", views_now(), None
        s.commit()
        if state.runner is not None:
            state.runner.cancel_job(job_id)
        return JobOut(**views.job_json(job))

    # -- exports ---------------------------------------------------------------------------
    @app.get(
        "/api/studies/{study_id}/trials/{number}/export",
        tags=["exports"],
        responses={200: {"content": {"application/json": {}, "application/yaml": {}},
                         "description": "a clnas.arch/1 document with provenance"},
                   **CONFLICT},  # the trial was not trained (rejected, pruned, failed, ...)
    )
    def export_trial(
        study_id: Id, number: Number, s: DB,
        format: Literal["json", "yaml"] = "json",
    ) -> Response:
        row = get_row(s, study_id)
        snap = snapshot(s, row)
        spec, t = snap.spec, _trial(snap, number)
        if t.state != TrialState.COMPLETE or REJECTED_ATTR in t.user_attrs:
            raise HTTPException(
                409, detail=f"trial {number} is {t.state.name}"
                + (" (rejected)" if REJECTED_ATTR in t.user_attrs else "")
                + "; only trained trials are exported",
            )
        doc = views.arch_export(row.id, spec, t)
        s.add(ExportRecord(study_id=row.id, trial_number=number, format=format,
                           sha256=views.digest(doc)))
        s.commit()
        fname = f"{spec.name}-trial{number}.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{fname}"'}
        if format == "yaml":
            return Response(yaml.safe_dump(doc, sort_keys=False), media_type="application/yaml",
                            headers=headers)
        return Response(json.dumps(doc, indent=2), media_type="application/json",
                        headers=headers)

    @app.get("/api/studies/{study_id}/export", tags=["exports"],
             responses={200: {"description": "the front as a clnas.bundle/1 document"}})
    def export_front(study_id: Id, s: DB) -> Response:
        row = get_row(s, study_id)
        snap = snapshot(s, row)
        spec = snap.spec
        front = [t for t in snap.trials if t.number in snap.front]  # number order
        bundle = {
            "format": "clnas.bundle/1",
            "study": spec.name,
            "provenance": views.provenance(row.id, spec),
            "archs": [views.arch_export(row.id, spec, t) for t in front],
        }
        s.add(ExportRecord(study_id=row.id, trial_number=None, format="json",
                           sha256=views.digest(bundle)))
        s.commit()
        headers = {"Content-Disposition": f'attachment; filename="{spec.name}-front.json"'}
        return Response(json.dumps(bundle, indent=2), media_type="application/json",
                        headers=headers)

    # -- stateless -------------------------------------------------------------------------
    @app.post("/api/cost", response_model=CostOut, tags=["tools"],
              responses={413: {"description": "the body is over the size limit"},
                         503: {"description": "too many analyses under way; retry"}})
    def post_cost(body: CostIn) -> CostOut:
        from objectives import cost_report

        try:  # the document's bounds are checked before any analysis (docs/limits.md)
            arch = parse_arch(body.arch)
        except ArchError as exc:
            raise arch_error_422(exc, ["body", "arch"]) from None
        with state.analyses.slot():
            try:
                report = cost_report(arch, resolution=body.resolution,
                                     num_classes=body.num_classes)
            except ArchError as exc:  # e.g. a resolution the stages cannot downsample
                raise arch_error_422(exc, ["body", "resolution"]) from None
        return CostOut.model_validate(report.to_dict())

    @app.get("/api/zoo", response_model=list[ZooOut], tags=["tools"])
    def get_zoo() -> list[ZooOut]:
        if state.zoo is None:
            from objectives import cost_report

            rows = []
            for name in zoo_names():
                arch = load_arch(name)
                r = cost_report(arch)
                rows.append({"name": name, "madds": r.madds, "params": r.params, "fcrf": r.fcrf,
                             "num_classes": arch.num_classes, "resolution": arch.resolution,
                             "blocks": sorted({st.block for st in arch.stages})})
            state.zoo = rows
        return [ZooOut(**r) for r in state.zoo]

    @app.get("/api/spaces", response_model=list[SpaceOut], tags=["tools"])
    def get_spaces() -> list[SpaceOut]:
        out = []
        for name in space_names():
            sp = load_space(name)
            blocks = sorted({b for st in sp.stages for b in st.blocks})
            out.append(SpaceOut(name=name, description=sp.description, dataset=sp.dataset,
                                resolution=sp.resolution, num_classes=sp.num_classes,
                                blocks=blocks))
        return out

    @app.get("/api/health", response_model=HealthOut, tags=["tools"])
    def health(s: DB) -> HealthOut:
        running = s.scalar(
            select(func.count()).select_from(StudyRow).where(StudyRow.status == "running")
        ) or 0
        ray = state.runner.ray_status if state.runner is not None else "disabled (API only)"
        return HealthOut(status="ok", version=VERSION, database=state.engine.dialect.name,
                         ray=ray, studies_running=running)

    if importlib.util.find_spec("service.dashboard") is not None:
        importlib.import_module("service.dashboard").mount(app)
    _document_errors(app)
    return app


def _document_errors(app: FastAPI) -> None:
    """Put the error statuses every operation can answer into `/openapi.json`, so the schema
    tells the whole truth (schemathesis checks it): 401 where a bearer token is required, 404
    where a path names an id, 409 where a route declares `responses=CONFLICT`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            for path, methods in schema.get("paths", {}).items():
                for op in methods.values():
                    responses = op.setdefault("responses", {})
                    if op.get("security"):
                        responses.setdefault("401", {
                            "description": "missing or invalid bearer token",
                            "content": _ERROR_BODY})
                    if "{" in path:
                        responses.setdefault("404", {"description": "unknown id",
                                                     "content": _ERROR_BODY})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def views_now() -> datetime:
    from service.db import utcnow

    return utcnow()
