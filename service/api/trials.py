"""A study's trials, Pareto front, baselines and hypervolume history (docs/api.md), read from
the snapshot cache (`service/store.py`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service import domain, views
from service.api.deps import DB, AppState, Id, Number, Offset
from service.api.schemas import (
    BaselinesOut,
    FrontOut,
    HvOut,
    HvPoint,
    StateName,
    TrialList,
    TrialOut,
)
from workers.tune import REJECTED_ATTR

router = APIRouter(prefix="/api/studies/{study_id}", tags=["trials"])


@router.get("/trials", response_model=TrialList)
def list_trials(
    study_id: Id,
    state: AppState,
    s: DB,
    state_: Annotated[StateName | None, Query(alias="state")] = None,
    rejected: bool | None = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    compact: bool = False,
) -> TrialList:
    snap = domain.snapshot(state, s, domain.study_row(s, study_id))
    spec, trials = snap.spec, snap.trials
    if state_ is not None:
        trials = [t for t in trials if t.state.name == state_]
    if rejected is not None:
        trials = [t for t in trials if (REJECTED_ATTR in t.user_attrs) == rejected]
    page = trials[offset: offset + limit]  # in number order
    return TrialList(
        items=[TrialOut(**views.trial_json(t, spec.metrics, compact=compact, front=snap.front,
                                           full=snap.promoted.get(t.number)))
               for t in page],
        total=len(trials), offset=offset, limit=limit,
    )


@router.get("/trials/{number}", response_model=TrialOut)
def get_trial(study_id: Id, number: Number, state: AppState, s: DB) -> TrialOut:
    snap = domain.snapshot(state, s, domain.study_row(s, study_id))
    return TrialOut(**views.trial_json(domain.trial(snap, number), snap.spec.metrics,
                                       front=snap.front, full=snap.promoted.get(number)))


@router.get("/front", response_model=FrontOut)
def get_front(study_id: Id, state: AppState, s: DB) -> FrontOut:
    snap = domain.snapshot(state, s, domain.study_row(s, study_id))
    spec = snap.spec
    front = [t for t in snap.trials if t.number in snap.front]  # Optuna's best_trials
    return FrontOut(
        metrics=spec.metrics, directions=list(spec.modes),
        trials=[TrialOut(**views.trial_json(t, spec.metrics, front=snap.front,
                                            full=snap.promoted.get(t.number)))
                for t in front],
    )


@router.get("/baselines", response_model=BaselinesOut)
def get_baselines(study_id: Id, state: AppState, s: DB) -> BaselinesOut:
    snap = domain.snapshot(state, s, domain.study_row(s, study_id))
    return BaselinesOut(items=[TrialOut(**b) for b in snap.baselines])


@router.get("/hypervolume", response_model=HvOut)
def get_hypervolume(study_id: Id, state: AppState, s: DB) -> HvOut:
    snap = domain.snapshot(state, s, domain.study_row(s, study_id))
    return HvOut(points=[HvPoint(**p) for p in snap.history])
