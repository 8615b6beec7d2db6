"""The study spec `clnas.study/1`: the document a user submits to run a search (issue 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from objectives.budget import Budget
from search_space.arch import load_document, validate_document
from search_space.errors import ArchError
from search_space.spaces import Space, load_space, space_names
from search_space.zoo import zoo_names
from workers.proxy import ProxyRecipe

Objective = Literal["accuracy", "madds", "params", "latency_ms"]
# How each objective is reported by the trainable and which way it goes.
Mode = Literal["min", "max"]
OBJECTIVE_METRICS: dict[str, tuple[str, Mode]] = {
    "accuracy": ("val_top1", "max"),
    "madds": ("madds", "min"),
    "params": ("params", "min"),
    "latency_ms": ("latency_ms", "min"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SearchSettings(_Strict):
    sampler: Literal["nsga2", "tpe", "random"] = "nsga2"
    n_trials: Annotated[int, Field(ge=1, le=100_000)] = 50
    max_concurrent: Annotated[int, Field(ge=1)] = 2
    cpus_per_trial: Annotated[float, Field(gt=0)] = 1.0
    gpus_per_trial: Annotated[float, Field(ge=0)] = 0.0  # fractional: proxies share a GPU
    scheduler: Literal["fifo", "asha", "moasha"] = "moasha"
    grace_period: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[int, Field(ge=2)] = 3
    max_failures: Annotated[int, Field(ge=0)] = 1
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0  # the samplers' seed range


class StudySpec(_Strict):
    format: Literal["clnas.study/1"]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    space: str | dict[str, Any] = "default"
    dataset: Literal["cifar100", "cifar10", "synthetic"] = "cifar100"
    data_dir: str | None = None
    budget: Budget = Budget()
    objectives: Annotated[list[Objective], Field(min_length=1)] = ["accuracy", "madds"]
    proxy: ProxyRecipe = ProxyRecipe()
    search: SearchSettings = SearchSettings()
    baselines: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _objectives(self) -> StudySpec:
        if self.objectives[0] != "accuracy":
            raise ValueError("objectives: the first objective must be 'accuracy'")
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives: duplicates in {self.objectives}")
        return self

    def load_space(self) -> Space:
        return load_space(self.space)

    @property
    def metrics(self) -> list[str]:
        return [OBJECTIVE_METRICS[o][0] for o in self.objectives]

    @property
    def modes(self) -> list[Mode]:
        return [OBJECTIVE_METRICS[o][1] for o in self.objectives]


def parse_study(data: Any) -> StudySpec:
    """Validate a study document; `ArchError` names every offending path (`search.n_trials`)."""
    spec = validate_document(StudySpec, data, "a study")
    problems: list[tuple[str, str]] = []
    if isinstance(spec.space, str) and spec.space not in space_names():
        problems.append(
            ("space", f"unknown built-in space {spec.space!r}; built-in: {space_names()}")
        )
    else:
        try:
            spec.load_space()
        except ArchError as exc:
            problems += [(f"space.{p}" if p != "<root>" else "space", m) for p, m in exc.problems]
    if spec.name.endswith(BASELINES_SUFFIX):
        problems.append(("name", f"must not end in {BASELINES_SUFFIX!r}: the study's zoo "
                                 "baselines are stored under that name"))
    problems += _baseline_problems(spec)
    if problems:
        raise ArchError(problems)
    return spec


BASELINES_SUFFIX = ".baselines"  # study `{name}.baselines` holds its zoo baselines
DATASET_CLASSES = {"cifar100": 100, "cifar10": 10, "synthetic": 100}


def _baseline_problems(spec: StudySpec) -> list[tuple[str, str]]:
    """Baselines are zoo models for the study's dataset (32x32, its class count) that fit the
    budget: reference points trained with the same recipe."""
    from objectives import cost_report
    from search_space import load_arch

    problems: list[tuple[str, str]] = []
    zoo = zoo_names()
    classes = DATASET_CLASSES[spec.dataset]
    fitting = []
    for name in zoo:
        a = load_arch(name)
        if a.resolution == 32 and a.num_classes == classes:
            fitting.append(name)
    if len(set(spec.baselines)) != len(spec.baselines):
        problems.append(("baselines", f"duplicates in {spec.baselines}"))
    for i, name in enumerate(spec.baselines):
        where = f"baselines[{i}]"
        if name not in zoo:
            problems.append((where, f"unknown zoo model {name!r}; for {spec.dataset}: {fitting}"))
            continue
        if name not in fitting:
            a = load_arch(name)
            problems.append((where, f"{name} is a {a.resolution}px {a.num_classes}-class model; "
                                    f"baselines for {spec.dataset} must be one of {fitting}"))
            continue
        verdict = spec.budget.check(cost_report(load_arch(name)))
        if not verdict.feasible:
            reasons = "; ".join(verdict.reasons)
            problems.append((where, f"{name} does not fit the budget: {reasons}"))
    return problems


def load_study(path: str | Path) -> StudySpec:
    return parse_study(load_document(path))
