"""JSON views of studies and trials, hypervolume, and export documents (issue 5)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from service.db import JobRow, StudyRow
from workers import optuna_compat
from workers.study import StudySpec
from workers.tune import (
    ARCH_ATTR,
    BASELINE_ATTR,
    COST_ATTR,
    CURVE_ATTR,
    PRUNED_AT_ATTR,
    REJECTED_ATTR,
)

STAGE_KEYS_SKIP = {"block", "repeat", "out", "stride"}


def iso(t: datetime | None) -> str | None:
    """The service's own timestamps: stored in UTC (naive once read back from SQLite)."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.isoformat()


def trial_iso(t: datetime | None) -> str | None:
    """Optuna's trial timestamps: it hands them out as naive *local* time."""
    if t is None:
        return None
    return (t.astimezone(UTC) if t.tzinfo is None else t).isoformat()


def stage_summary(arch: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each stage's block type, repeat, width, stride and technique keys (g1, g2, part, ...)."""
    if not arch:
        return []
    out = []
    for s in arch.get("stages", []):
        row = {"block": s.get("block"), "repeat": s.get("repeat", 1), "out": s.get("out"),
               "stride": s.get("stride", 1)}
        row |= {k: v for k, v in s.items() if k not in STAGE_KEYS_SKIP}
        out.append(row)
    return out


def trial_json(
    t: FrozenTrial,
    metrics: list[str],
    *,
    compact: bool = False,
    front: set[int] | None = None,
    full: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A trial; `full` is its latest promoted training (`service.promotion.full_json`)."""
    attrs = t.user_attrs
    values = None
    if t.state == TrialState.COMPLETE and t.values is not None:
        values = dict(zip(metrics, t.values, strict=False))
    doc: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "rejected": REJECTED_ATTR in attrs,
        "reasons": attrs.get(REJECTED_ATTR, []),
        "values": values,
        "cost": attrs.get(COST_ATTR),
        "stages": stage_summary(attrs.get(ARCH_ATTR)),
        "pruned_at_epoch": attrs.get(PRUNED_AT_ATTR),
        "baseline": attrs.get(BASELINE_ATTR),
        "on_front": front is not None and t.number in front,
        "epochs_done": len(attrs.get(CURVE_ATTR, [])),
        "started_at": trial_iso(t.datetime_start),
        "finished_at": trial_iso(t.datetime_complete),
        "full": full,
    }
    if not compact:
        doc["arch"] = attrs.get(ARCH_ATTR)
        doc["curve"] = attrs.get(CURVE_ATTR, [])
    return doc


def study_json(row: StudyRow, spec: StudySpec, progress: dict[str, Any],
               hypervolume: float | None, kendall_tau: dict[str, Any] | None) -> dict[str, Any]:
    """A study's header, as the API and the dashboard show it (`StudyHeader`)."""
    return {
        "id": row.id, "name": row.name, "status": row.status, "dataset": spec.dataset,
        "synthetic": spec.dataset == "synthetic",
        "space": spec.space if isinstance(spec.space, str) else "inline",
        "objectives": list(spec.objectives), "metrics": spec.metrics,
        "directions": list(spec.modes), "n_trials": spec.search.n_trials,
        "created_at": iso(row.created_at) or "", "started_at": iso(row.started_at),
        "finished_at": iso(row.finished_at), "error": row.error,
        "progress": progress, "hypervolume": hypervolume, "kendall_tau": kendall_tau,
    }


def zoo_rows() -> list[dict[str, Any]]:
    """Every zoo model with its costs (`clnas zoo`, `GET /api/zoo`)."""
    from objectives import cost_report
    from search_space import load_arch, zoo_names

    rows = []
    for name in zoo_names():
        arch = load_arch(name)
        report = cost_report(arch)
        rows.append({"name": name, "num_classes": arch.num_classes,
                     "resolution": arch.resolution, "madds": report.madds,
                     "params": report.params, "fcrf": report.fcrf,
                     "blocks": sorted({s.block for s in arch.stages})})
    return rows


def job_json(job: JobRow) -> dict[str, Any]:
    """A job row for the API."""
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "study_id": job.study_id,
        "trial_number": job.trial_number,
        "spec": job.spec,
        "progress": job.progress,
        "curve": job.curve or [],
        "result": job.result,
        "error": job.error,
        "created_at": iso(job.created_at) or "",
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


def _feasible_done(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in sorted(trials, key=lambda t: t.number)
            if t.state == TrialState.COMPLETE and REJECTED_ATTR not in t.user_attrs
            and t.values is not None]


def _normalised(spec: StudySpec, trials: list[FrozenTrial],
                seen: list[FrozenTrial]) -> tuple[np.ndarray, np.ndarray]:
    """Objective vectors of `trials` as losses in [0, 1]: accuracy -> 1 - acc; a cost ->
    cost / reference, the reference being the budget's max if set, else 1.1 x the largest
    value among `seen` (every finished feasible trial, so the study's hypervolume and its
    history share one reference)."""
    vals = np.array([t.values for t in trials], dtype=float)
    seen_vals = np.array([t.values for t in seen], dtype=float)
    cols = []
    for j, metric in enumerate(spec.metrics):
        col = vals[:, j]
        if metric == "val_top1":
            cols.append(1.0 - col)
            continue
        limit = {"madds": spec.budget.max_madds, "params": spec.budget.max_params}.get(metric)
        ref = float(limit) if limit else float(seen_vals[:, j].max()) * 1.1 or 1.0
        cols.append(col / ref)
    return np.stack(cols, axis=1), np.ones(len(cols))


def hypervolume(spec: StudySpec, front: list[FrozenTrial],
                trials: list[FrozenTrial]) -> float | None:
    """Dominated hypervolume of the front in the normalised space (reference point all ones);
    `trials`: the study's trials (for the cost references)."""
    front = [t for t in front if t.values is not None]
    if not front:
        return None
    losses, ref = _normalised(spec, front, _feasible_done(trials) or front)
    losses = np.minimum(losses, ref)
    return float(optuna_compat.hypervolume(losses, ref))


def hypervolume_history(spec: StudySpec, trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """Hypervolume after each finished feasible trial, in trial order (fixed reference)."""
    done = _feasible_done(trials)
    if not done:
        return []
    losses, ref = _normalised(spec, done, done)
    losses = np.minimum(losses, ref)
    points, front = [], np.empty((0, losses.shape[1]))
    for t, loss in zip(done, losses, strict=True):
        dominated = bool(np.any(np.all(front <= loss, axis=1)))
        if not dominated:
            keep = ~np.all(loss <= front, axis=1)
            front = np.vstack([front[keep], loss])
        hv = float(optuna_compat.hypervolume(front, ref, assume_pareto=True))
        points.append({"trial": t.number, "hypervolume": hv})
    return points


def versions() -> dict[str, str]:
    out = {}
    for dist in ("clnas", "torch", "optuna", "ray", "numpy", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def provenance(
    study_id: int, spec: StudySpec, t: FrozenTrial | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "study": spec.name,
        "study_id": study_id,
        "dataset": spec.dataset,
        "synthetic": spec.dataset == "synthetic",
        "seed": spec.search.seed,
        "proxy_seed": spec.proxy.seed,
        "objectives": spec.objectives,
        "exported_at": datetime.now(UTC).isoformat(),
        "versions": versions(),
    }
    if t is not None:
        doc["trial"] = t.number
        doc["metrics"] = dict(zip(spec.metrics, t.values or [], strict=False))
        doc["cost"] = t.user_attrs.get(COST_ATTR)
        curve = t.user_attrs.get(CURVE_ATTR, [])
        doc["final_epoch"] = curve[-1] if curve else None
    return doc


def arch_export(study_id: int, spec: StudySpec, t: FrozenTrial) -> dict[str, Any]:
    arch = dict(t.user_attrs[ARCH_ATTR])
    arch["provenance"] = provenance(study_id, spec, t)
    return arch


def digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
