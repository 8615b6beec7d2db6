"""Run a study: Optuna samples (define-by-run, constraints from the analytic budget check), Ray
Tune schedules proxy training, Optuna's RDB storage keeps every trial (issue 4).

A rejected candidate (over budget, not FCRF) is never trained: its trainable reports accuracy 0
with its real costs at once, and its constraint values (`trial.set_constraint`) make it
infeasible, so samplers learn the feasible region and `study.best_trials` (the Pareto front)
never contains it. Re-running an interrupted study resumes it: completed trials are kept,
trials left RUNNING by the killed run are marked FAIL, and only the remainder is sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from objectives import cost_report
from search_space import load_arch
from search_space.sampling import sample_arch
from workers.schedulers import make_scheduler
from workers.study import StudySpec

ARCH_ATTR, COST_ATTR, REJECTED_ATTR, CURVE_ATTR = "arch", "cost", "rejected", "curve"


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    seed = spec.search.seed
    if spec.search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=max(4, min(50, spec.search.n_trials // 4))
        )
    if spec.search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)
    return optuna.samplers.RandomSampler(seed=seed)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


class _DefineByRun:
    """Sample an arch over the Optuna trial, cost it, apply the budget (picklable for Tune)."""

    def __init__(self, spec: StudySpec):
        self.spec = spec
        self.space = spec.load_space()

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        spec = self.spec
        arch = sample_arch(self.space, trial, name=f"{spec.name}-t{trial.number}")
        report = cost_report(arch, crf=True)
        verdict = spec.budget.check(report)
        for name, value in zip(spec.budget.constraint_names, verdict.constraints, strict=True):
            trial.set_constraint(name, value)
        cost = {"madds": report.madds, "params": report.params, "fcrf": report.fcrf}
        trial.set_user_attr(ARCH_ATTR, arch.to_dict())
        trial.set_user_attr(COST_ATTR, cost)
        if not verdict.feasible:
            trial.set_user_attr(REJECTED_ATTR, [v.message for v in verdict.violations])
        return {
            "arch": arch.to_dict(),
            "cost": cost,
            "rejected": verdict.reasons,
            "optuna_trial_id": trial._trial_id,
        }


def _trainable(config: dict[str, Any], spec_json: str, storage_url: str) -> None:
    """One Tune trial: report a rejected candidate at once, else proxy-train it."""
    from objectives.latency import measure_latency
    from workers.proxy import train_proxy
    from workers.study import StudySpec

    spec = StudySpec.model_validate_json(spec_json)
    cost = config["cost"]
    base = {"madds": cost["madds"], "params": cost["params"]}
    if config["rejected"]:
        # Accuracy 0 and latency 0 are placeholders: the budget constraints make the trial
        # infeasible, so constrained domination ranks it below every feasible trial.
        tune.report({**base, "val_top1": 0.0, "latency_ms": 0.0, "epoch": 0, "rejected": 1})
        return
    arch = load_arch(config["arch"])
    latency = None
    if "latency_ms" in spec.objectives:
        latency = measure_latency(arch, threads=1, warmup=3, repeats=10).median_ms
    storage = open_storage(storage_url)
    curve: list[dict[str, Any]] = []

    def report(metrics: Any) -> None:
        curve.append(dict(metrics))
        storage.set_trial_user_attr(config["optuna_trial_id"], CURVE_ATTR, curve)
        tune.report({**base, **metrics, "latency_ms": latency or 0.0, "rejected": 0})

    train_proxy(arch, spec.proxy, spec.data_dir, dataset=spec.dataset, report=report)


@dataclass
class StudyOutcome:
    name: str
    trials: int
    completed: int
    rejected: int
    front: list[optuna.trial.FrozenTrial] = field(default_factory=list)


def _close_stale_trials(storage: optuna.storages.RDBStorage, name: str) -> None:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)


def _finished(storage: optuna.storages.RDBStorage, name: str) -> int:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def run_study(
    spec: StudySpec,
    *,
    storage_url: str,
    results_dir: str | Path,
    ray_address: str | None = None,
    verbose: int = 0,
) -> StudyOutcome:
    """Run (or resume) `spec` to `n_trials` completed trials; returns the Pareto front."""
    storage = open_storage(storage_url)
    _close_stale_trials(storage, spec.name)
    remaining = spec.search.n_trials - _finished(storage, spec.name)
    if not ray.is_initialized():
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=verbose > 0)
    if remaining > 0:
        search = OptunaSearch(
            space=_DefineByRun(spec),
            metric=spec.metrics,
            mode=list[str](spec.modes),
            sampler=make_sampler(spec),
            storage=storage,
            study_name=spec.name,
        )
        scheduler = make_scheduler(
            spec.search.scheduler,
            metric="val_top1",
            mode="max",
            time_attr="epoch",
            max_t=spec.proxy.epochs,
            grace_period=spec.search.grace_period,
            reduction_factor=spec.search.reduction_factor,
            objectives=list(zip(spec.metrics[:2], spec.modes[:2], strict=True)),
        )
        trainable = tune.with_resources(
            tune.with_parameters(
                _trainable, spec_json=spec.model_dump_json(), storage_url=storage_url
            ),
            {"cpu": spec.search.cpus_per_trial, "gpu": spec.search.gpus_per_trial},
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=search,
                scheduler=scheduler,
                num_samples=remaining,
                max_concurrent_trials=spec.search.max_concurrent,
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=str(Path(results_dir).resolve()),
                verbose=verbose,
                failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            ),
        )
        tuner.fit()
    return summarize(storage, spec.name)


def summarize(storage: optuna.storages.BaseStorage, name: str) -> StudyOutcome:
    study = optuna.load_study(study_name=name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    rejected = sum(1 for t in complete if REJECTED_ATTR in t.user_attrs)
    return StudyOutcome(name, len(trials), len(complete), rejected, study.best_trials)
