"""Which trials keep training? Ray Tune schedulers picked by name: FIFO, ASHA, and MO-ASHA.

MO-ASHA is asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel
Hyperparameter Tuning", Alg. 2) with the single-metric ranking replaced by non-dominated
sorting over several objectives (Schmucker et al. 2021, "Multi-objective Asynchronous
Successive Halving"). The survival rule at a rung, with `n` results recorded there (the
deciding trial's included) and `eta` the reduction factor:

* `n < eta`: the trial continues; too few results to judge.
* otherwise it continues iff fewer than `ceil(n / eta)` recorded trials lie on strictly
  better Pareto layers than its own. A whole layer survives or falls together, so the first
  front always survives, even when it holds more than `ceil(n / eta)` trials.

Like ASHA, each trial is judged once per rung, when it first reports at or past the
milestone, against whatever has been recorded there so far; stopped, errored and removed
trials keep their recorded results as evidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from workers.optuna_compat import non_domination_rank

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

SchedulerName = Literal["fifo", "asha", "moasha"]
Mode = Literal["min", "max"]
Objective = tuple[str, Mode]


def make_scheduler(
    name: SchedulerName,
    *,
    metric: str,
    mode: Mode,
    time_attr: str,
    max_t: int,
    grace_period: int,
    reduction_factor: float,
    objectives: Sequence[Objective],
) -> TrialScheduler:
    """The scheduler called `name`; `metric`/`mode` drive `asha`, `objectives` drive `moasha`.

    Arguments the chosen scheduler does not use are ignored, so one orchestration config can
    switch between all three.
    """
    if name == "fifo":
        return FIFOScheduler()
    if name == "asha":
        _check_mode("mode", mode)
        _check_rungs(max_t=max_t, grace_period=grace_period, reduction_factor=reduction_factor)
        return AsyncHyperBandScheduler(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
        )
    if name == "moasha":
        return MOASHA(
            objectives=objectives,
            time_attr=time_attr,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
        )
    raise ValueError(f"name: must be one of {list(get_args(SchedulerName))}, got {name!r}")


class MOASHA(FIFOScheduler):
    """Multi-objective ASHA; see the module docstring for the survival rule.

    `objectives` are `(metric, mode)` pairs, e.g. `[("val_top1", "max"), ("madds", "min")]`;
    every one must be in a result for the scheduler to act on it. Rungs sit at
    `grace_period * reduction_factor**k` below `max_t`; a trial reaching `max_t` is stopped.
    """

    def __init__(
        self,
        *,
        objectives: Sequence[Objective],
        time_attr: str = "training_iteration",
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: float = 3,
    ) -> None:
        _check_objectives(objectives)
        _check_rungs(max_t=max_t, grace_period=grace_period, reduction_factor=reduction_factor)
        super().__init__()
        self._objectives = [(metric, mode) for metric, mode in objectives]
        self._maximise = np.array([mode == "max" for _, mode in self._objectives])
        # Tune checks that every result carries the scheduler's `metric`: the first objective.
        self._metric = self._objectives[0][0]
        self._time_attr = time_attr
        self._max_t = max_t
        self._rungs = [
            _MORung(milestone, reduction_factor)
            for milestone in _milestones(grace_period, reduction_factor, max_t)
        ]
        self._num_stopped = 0

    @property
    def rungs(self) -> list[_MORung]:
        """Rungs in ascending milestone order."""
        return self._rungs

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Accept `TuneConfig(metric=..., mode=...)` only when it names one of the objectives.

        The objectives are fixed at construction; a matching pair lets `ResultGrid` default to
        it, anything else is a conflict that Tune reports.
        """
        if metric is None:
            return mode is None
        return any(metric == m and mode in (None, d) for m, d in self._objectives)

    def on_trial_result(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]
    ) -> str:
        if not self._carries_objectives(result):
            return TrialScheduler.CONTINUE
        if result[self._time_attr] >= self._max_t:
            return TrialScheduler.STOP
        if self._record(trial.trial_id, result):
            return TrialScheduler.CONTINUE
        self._num_stopped += 1
        return TrialScheduler.STOP

    def on_trial_complete(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]
    ) -> None:
        # As ASHA: a final result that never passed through `on_trial_result` still counts.
        if self._carries_objectives(result):
            self._record(trial.trial_id, result)

    def debug_string(self) -> str:
        objectives = ", ".join(f"{metric} {mode}" for metric, mode in self._objectives)
        rungs = " | ".join(f"t={r.milestone:g}: {len(r.recorded)} recorded" for r in self._rungs)
        return f"Using MOASHA ({objectives}): num_stopped={self._num_stopped}\nRungs: {rungs}"

    def _carries_objectives(self, result: Mapping[str, Any]) -> bool:
        return self._time_attr in result and all(m in result for m, _ in self._objectives)

    def _record(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Judge the trial at the highest rung it has reached, once; True means continue."""
        reached = [r for r in self._rungs if result[self._time_attr] >= r.milestone]
        if not reached or trial_id in reached[-1].recorded:
            return True
        return reached[-1].decide(trial_id, self._loss(result))

    def _loss(self, result: Mapping[str, Any]) -> np.ndarray:
        """The objective vector with every coordinate minimised.

        A NaN in any objective makes the result worst in all of them: a diverged run must not
        survive on its MAdds alone.
        """
        values = np.array([float(result[m]) for m, _ in self._objectives])
        if np.isnan(values).any():
            return np.full_like(values, np.inf)
        return np.where(self._maximise, -values, values)


class _MORung:
    """The loss vectors recorded at one milestone, and the keep/stop rule over them."""

    def __init__(self, milestone: float, reduction_factor: float) -> None:
        self.milestone = milestone
        self._reduction_factor = reduction_factor
        self.recorded: dict[str, np.ndarray] = {}

    def decide(self, trial_id: str, loss: np.ndarray) -> bool:
        """Record `loss` (every coordinate minimised) for `trial_id`; True means continue."""
        self.recorded[trial_id] = np.asarray(loss, dtype=float)
        n = len(self.recorded)
        if n < self._reduction_factor:
            return True
        layers = non_domination_rank(np.stack(list(self.recorded.values())))
        own = layers[list(self.recorded).index(trial_id)]
        return int(np.count_nonzero(layers < own)) < math.ceil(n / self._reduction_factor)


def _milestones(grace_period: int, reduction_factor: float, max_t: int) -> list[float]:
    """`grace_period * reduction_factor**k` below `max_t`; reaching `max_t` ends a trial anyway."""
    milestones: list[float] = []
    milestone: float = grace_period
    while milestone < max_t:
        milestones.append(milestone)
        milestone *= reduction_factor
    return milestones


def _check_mode(path: str, mode: str) -> None:
    if mode not in get_args(Mode):
        raise ValueError(f"{path}: must be one of {list(get_args(Mode))}, got {mode!r}")


def _check_objectives(objectives: Sequence[Objective]) -> None:
    if not objectives:
        raise ValueError("objectives: must name at least one (metric, mode) pair")
    seen: set[str] = set()
    for i, (metric, mode) in enumerate(objectives):
        _check_mode(f"objectives[{i}].mode", mode)
        if metric in seen:
            raise ValueError(f"objectives[{i}].metric: {metric!r} is already an objective")
        seen.add(metric)


def _check_rungs(*, max_t: int, grace_period: int, reduction_factor: float) -> None:
    if reduction_factor < 2:
        raise ValueError(f"reduction_factor: eta must be >= 2, got {reduction_factor}")
    if grace_period <= 0:
        raise ValueError(f"grace_period: must be positive, got {grace_period}")
    if max_t < grace_period:
        raise ValueError(f"max_t: must be >= grace_period ({grace_period}), got {max_t}")
