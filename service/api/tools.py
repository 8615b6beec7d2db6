"""Stateless tools: the cost of a document, the zoo, the search spaces, and the service's
health (docs/api.md)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from search_space import ArchError
from search_space.arch import parse_arch
from search_space.spaces import load_space, space_names
from service import views
from service.api.deps import DB, AppState
from service.api.errors import arch_error_422
from service.api.schemas import CostIn, CostOut, HealthOut, SpaceOut, ZooOut
from service.db import StudyRow

router = APIRouter(prefix="/api", tags=["tools"])
VERSION = views.versions()["clnas"]


@router.post("/cost", response_model=CostOut,
             responses={413: {"description": "the body is over the size limit"},
                        503: {"description": "too many analyses under way; retry"}})
def post_cost(body: CostIn, state: AppState) -> CostOut:
    from objectives import cost_report

    try:  # the document's bounds are checked before any analysis (docs/limits.md)
        arch = parse_arch(body.arch)
    except ArchError as exc:
        raise arch_error_422(exc, ["body", "arch"]) from None
    with state.analyses.slot():
        try:
            report = cost_report(arch, resolution=body.resolution, num_classes=body.num_classes)
        except ArchError as exc:  # e.g. a resolution the stages cannot downsample
            raise arch_error_422(exc, ["body", "resolution"]) from None
    return CostOut.model_validate(report.to_dict())


@router.get("/zoo", response_model=list[ZooOut])
def get_zoo(state: AppState) -> list[ZooOut]:
    if state.zoo is None:
        state.zoo = views.zoo_rows()
    return [ZooOut(**r) for r in state.zoo]


@router.get("/spaces", response_model=list[SpaceOut])
def get_spaces() -> list[SpaceOut]:
    out = []
    for name in space_names():
        sp = load_space(name)
        blocks = sorted({b for st in sp.stages for b in st.blocks})
        out.append(SpaceOut(name=name, description=sp.description, dataset=sp.dataset,
                            resolution=sp.resolution, num_classes=sp.num_classes, blocks=blocks))
    return out


@router.get("/health", response_model=HealthOut)
def health(state: AppState, s: DB) -> HealthOut:
    running = s.scalar(
        select(func.count()).select_from(StudyRow).where(StudyRow.status == "running")
    ) or 0
    ray = state.runner.ray_status if state.runner is not None else "disabled (API only)"
    return HealthOut(status="ok", version=VERSION, database=state.engine.dialect.name,
                     ray=ray, studies_running=running)
