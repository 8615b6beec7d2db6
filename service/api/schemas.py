"""Every request and response model of the REST API and the dashboard's data endpoints (what
`/openapi.json` promises). Reference: docs/api.md."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from search_space.arch import MAX_CLASSES, MAX_RESOLUTION, MIN_RESOLUTION

Status = Literal["queued", "running", "cancelling", "completed", "failed", "cancelled"]
StateName = Literal["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Progress(_Out):
    n_trials: int
    sampled: int
    finished: int
    rejected: int
    running: int
    completed: int
    pruned: int
    failed: int
    front_size: int
    baselines_done: int
    baselines_total: int
    rejected_by_reason: dict[str, int]


class KendallOut(_Out):
    tau: float
    n: int


class StudyHeader(_Out):
    """A study as the studies list and the dashboard show it."""

    id: int
    name: str
    status: Status
    dataset: str
    synthetic: bool
    space: str
    objectives: list[str]
    metrics: list[str]
    directions: list[Literal["min", "max"]]
    n_trials: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    progress: Progress
    hypervolume: float | None
    kendall_tau: KendallOut | None = None


class StudyOut(StudyHeader):
    spec: dict[str, Any] | None = None


class StudyList(_Out):
    items: list[StudyOut]
    total: int
    offset: int
    limit: int


class Reason(_Out):
    constraint: str
    value: float
    limit: float
    message: str


class FullOut(_Out):
    """A trial's latest promoted full training."""

    job_id: int
    status: Status
    recipe: str
    epochs: int
    top1: float | None
    top5: float | None


class TrialOut(_Out):
    number: int
    state: StateName
    rejected: bool
    reasons: list[Reason]
    values: dict[str, float] | None
    cost: dict[str, Any] | None
    stages: list[dict[str, Any]]
    pruned_at_epoch: int | None
    baseline: str | None
    on_front: bool
    epochs_done: int
    started_at: str | None
    finished_at: str | None
    full: FullOut | None = None
    arch: dict[str, Any] | None = None
    curve: list[dict[str, Any]] | None = None


class TrialList(_Out):
    items: list[TrialOut]
    total: int
    offset: int
    limit: int


class FrontOut(_Out):
    metrics: list[str]
    directions: list[Literal["min", "max"]]
    trials: list[TrialOut]


class BaselinesOut(_Out):
    items: list[TrialOut]


class HvPoint(_Out):
    trial: int
    hypervolume: float


class HvOut(_Out):
    points: list[HvPoint]


class CostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: dict[str, Any]
    resolution: Annotated[int, Field(ge=MIN_RESOLUTION, le=MAX_RESOLUTION)] | None = None
    num_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)] | None = None


class CostRow(_Out):
    """One row of a cost report: the stem, a block (`stages[2].1`) or the head."""

    name: str
    type: str
    stage: int | None
    index: int | None
    in_: int = Field(alias="in")
    out: int
    stride: int
    size_in: int
    size_out: int
    madds: int
    params: int
    conv_bias_adds: int
    crf_min_fraction: float | None
    crf_mean_fraction: float | None


class StageCostOut(_Out):
    name: str
    stage: int
    type: str
    blocks: int
    in_: int = Field(alias="in")
    out: int
    size_out: int
    madds: int
    params: int
    crf_min_fraction: float | None


class CostOut(_Out):
    """`objectives.cost_report` of a document (docs/api.md)."""

    name: str
    resolution: int
    num_classes: int
    madds: int
    params: int
    conv_bias_adds: int
    fcrf: bool | None
    blocks: list[CostRow]
    stages: list[StageCostOut]


class PromoteIn(BaseModel):
    """Full training of one trial's design (docs/design.md §6); unset values come from the
    recipe."""

    model_config = ConfigDict(extra="forbid")
    recipe: Literal["clcnet", "mobilenet_v2", "antnet"] = "clcnet"
    data_dir: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="ImageNet folders (train/, val/); default: the service's "
        "data dir's imagenet/ (or the data dir itself)")
    epochs: Annotated[int, Field(ge=1, le=10_000)] | None = None
    workers: Annotated[int, Field(ge=1, le=1024)] = 1
    gpus_per_worker: Annotated[float, Field(ge=0, le=64)] = 0.0
    cpus_per_worker: Annotated[int, Field(ge=1, le=1024)] = 1
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    image_size: Annotated[int, Field(ge=16, le=1024)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class JobProgress(_Out):
    epoch: int  # epochs finished
    epochs: int
    step: int | None = None  # within the epoch under way
    steps: int | None = None


class JobOut(_Out):
    id: int
    kind: Literal["search", "train"]
    status: Status
    study_id: int | None
    trial_number: int | None
    spec: dict[str, Any]
    progress: JobProgress | None
    curve: list[dict[str, Any]]
    result: dict[str, Any] | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class JobList(_Out):
    items: list[JobOut]
    total: int
    offset: int
    limit: int


class ZooOut(_Out):
    name: str
    madds: int
    params: int
    fcrf: bool | None
    num_classes: int
    resolution: int
    blocks: list[str]


class SpaceOut(_Out):
    name: str
    description: str
    dataset: str
    resolution: int
    num_classes: int
    blocks: list[str]


class HealthOut(_Out):
    status: Literal["ok"]
    version: str
    database: str
    ray: str
    studies_running: int




# -- the dashboard's data (service/dashboard) ------------------------------------------------
class DashboardStudies(_Out):
    items: list[StudyHeader]
    total: int
    offset: int
    limit: int


class DashboardSnapshot(_Out):
    """A study view's data: header, compact trials numbered >= `since`, the front's numbers,
    hypervolume history and baselines; `version` changes whenever any of it does."""

    study: StudyHeader
    version: str
    total: int
    trials: list[TrialOut]
    front: list[int]
    hypervolume_history: list[HvPoint]
    baselines: list[TrialOut]
