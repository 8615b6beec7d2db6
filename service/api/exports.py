"""Downloads: one trained trial as a `clnas.arch/1` document, a study's front as a
`clnas.bundle/1` (docs/api.md)."""

from __future__ import annotations

import json
from typing import Literal

import yaml
from fastapi import APIRouter, Response

from service import domain
from service.api.deps import CONFLICT, DB, AppState, Id, Number

router = APIRouter(prefix="/api/studies/{study_id}", tags=["exports"])


def _download(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@router.get(
    "/trials/{number}/export",
    responses={200: {"content": {"application/json": {}, "application/yaml": {}},
                     "description": "a clnas.arch/1 document with provenance"},
               **CONFLICT},  # the trial was not trained (rejected, pruned, failed, ...)
)
def export_trial(
    study_id: Id, number: Number, state: AppState, s: DB,
    format: Literal["json", "yaml"] = "json",
) -> Response:
    spec, doc = domain.export_trial(state, s, study_id, number, format)
    headers = _download(f"{spec.name}-trial{number}.{format}")
    if format == "yaml":
        return Response(yaml.safe_dump(doc, sort_keys=False), media_type="application/yaml",
                        headers=headers)
    return Response(json.dumps(doc, indent=2), media_type="application/json", headers=headers)


@router.get("/export", responses={200: {"description": "the front as a clnas.bundle/1 document"}})
def export_front(study_id: Id, state: AppState, s: DB) -> Response:
    spec, bundle = domain.export_front(state, s, study_id)
    return Response(json.dumps(bundle, indent=2), media_type="application/json",
                    headers=_download(f"{spec.name}-front.json"))
