"""Promotion of a searched design to full training (issue 7): the train job's settings, the
full results shown with each trial, and the Kendall tau between proxy and full accuracy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from search_space import ArchError
from service.db import JobRow
from workers.full.ranking import kendall_tau
from workers.full.recipe import load_recipe
from workers.tune import REJECTED_ATTR

TRAIN = "train"
PROXY_METRIC = "val_top1"


class FieldError(ValueError):
    """A promotion request field that cannot be used; `loc` is its path in the request."""

    def __init__(self, loc: list[str | int], msg: str):
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


def default_data_dir(service_data_dir: str | None) -> Path | None:
    """`<data dir>/imagenet` when it exists, else the data dir itself."""
    if not service_data_dir:
        return None
    base = Path(service_data_dir)
    return base / "imagenet" if (base / "imagenet").is_dir() else base


def check_data_dir(path: Path) -> None:
    """The ImageNet folder layout's top level; the full scan happens in the train job."""
    try:
        is_dir = path.is_dir()
        missing = [d for d in ("train", "val") if not (path / d).is_dir()]
    except (ValueError, OSError) as exc:
        raise FieldError(["body", "data_dir"], f"not a usable path: {exc}") from None
    if not is_dir:
        raise FieldError(["body", "data_dir"], f"{path} is not a directory")
    if missing:
        raise FieldError(["body", "data_dir"],
                         f"{path} lacks {' and '.join(missing)}/ (the ImageNet folder layout: "
                         "train/<wnid>/*.JPEG, val/<wnid>/*.JPEG)")


def train_spec(request: dict[str, Any], service_data_dir: str | None) -> dict[str, Any]:
    """The request with defaults filled in: data_dir resolved and checked, the recipe's epochs
    when none is given; the recipe with the overrides is validated here, so a bad combination
    is a 422 naming the field rather than a failed job."""
    spec = dict(request)
    if spec.get("data_dir"):
        try:
            data = Path(spec["data_dir"]).expanduser().resolve()
        except (RuntimeError, ValueError, OSError) as exc:  # ~nouser, NUL byte, too long
            raise FieldError(["body", "data_dir"], f"not a usable path: {exc}") from None
    else:
        found = default_data_dir(service_data_dir)
        if found is None:
            raise FieldError(["body", "data_dir"],
                             "required: the service has no data dir (--data-dir) to default to")
        data = found.resolve()
    check_data_dir(data)
    spec["data_dir"] = str(data)
    overrides = {k: spec.get(k) for k in ("epochs", "batch_size", "image_size")}
    try:
        recipe = load_recipe(spec["recipe"]).with_overrides(**overrides)
    except ArchError as exc:
        path, msg = exc.problems[0]
        field = path.split(".")[0] if path.split(".")[0] in overrides else "recipe"
        raise FieldError(["body", field], msg) from None
    except (ValueError, ValidationError) as exc:
        raise FieldError(["body", "recipe"], str(exc)) from None
    if recipe.batch_size % spec["workers"]:
        loc = "batch_size" if spec.get("batch_size") else "workers"
        raise FieldError(["body", loc], f"the batch size {recipe.batch_size} does not split "
                         f"evenly over {spec['workers']} workers")
    spec["epochs"] = recipe.epochs
    return spec


def train_jobs(s: Session, study_id: int) -> list[JobRow]:
    """The study's train jobs, oldest first."""
    return list(s.scalars(select(JobRow).where(JobRow.study_id == study_id,
                                               JobRow.kind == TRAIN).order_by(JobRow.id)))


def full_json(job: JobRow) -> dict[str, Any]:
    """A trial's `full` field: its latest train job and, once completed, the full accuracy."""
    result = job.result or {}
    return {
        "job_id": job.id,
        "status": job.status,
        "recipe": job.spec.get("recipe"),
        "epochs": job.spec.get("epochs"),
        "top1": result.get("top1"),
        "top5": result.get("top5"),
    }


def full_by_trial(jobs: list[JobRow]) -> dict[int, dict[str, Any]]:
    """Trial number -> `full` of its latest train job (`jobs` oldest first)."""
    return {j.trial_number: full_json(j) for j in jobs if j.trial_number is not None}


def proxy_accuracy(t: FrozenTrial, metrics: list[str]) -> float | None:
    """The search's accuracy of a trained, feasible trial (None otherwise)."""
    if t.state != TrialState.COMPLETE or REJECTED_ATTR in t.user_attrs or t.values is None:
        return None
    if PROXY_METRIC not in metrics:
        return None
    return float(t.values[metrics.index(PROXY_METRIC)])


def study_kendall(
    jobs: list[JobRow], trials: list[FrozenTrial], metrics: list[str]
) -> dict[str, Any] | None:
    """Kendall's tau-b between proxy and full top-1 over the trials whose latest completed
    train job has a top-1 (`jobs` oldest first). None with fewer than 3 such trials, or when
    either ranking is all ties (tau is undefined then)."""
    full: dict[int, float] = {}
    for j in jobs:
        top1 = (j.result or {}).get("top1")
        if j.status == "completed" and j.trial_number is not None and top1 is not None:
            full[j.trial_number] = float(top1)
    pairs = []
    for t in trials:
        proxy = proxy_accuracy(t, metrics)
        if t.number in full and proxy is not None and math.isfinite(proxy) \
                and math.isfinite(full[t.number]):
            pairs.append((proxy, full[t.number]))
    tau = kendall_tau([p for p, _ in pairs], [f for _, f in pairs])
    return None if tau is None else {"tau": tau, "n": len(pairs)}
