"""MO-ASHA against Ray's ASHA on scripted learning curves, its rung rule, and a real Tune run."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from ray import cloudpickle, tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from workers.schedulers import MOASHA, SchedulerName, _MORung, make_scheduler

MAX_T = 9
OBJECTIVES = [("val_top1", "max"), ("madds", "min")]
SETTINGS: dict[str, Any] = dict(
    metric="val_top1",
    mode="max",
    time_attr="training_iteration",
    max_t=MAX_T,
    grace_period=1,
    reduction_factor=3,
    objectives=OBJECTIVES,
)

# name -> (val_top1 after epoch 1, madds). Rungs sit at epochs 1 and 3. A dominates B, C, D;
# B and D trade accuracy for MAdds; L is the cheap, less accurate end of the front; X is
# dominated by everyone.
CURVES: dict[str, tuple[float, int]] = {
    "A": (0.60, 300),
    "B": (0.57, 310),
    "C": (0.55, 320),
    "D": (0.52, 305),
    "L": (0.40, 50),
    "X": (0.35, 330),
}
# Epoch at which each trial stops when trials reach the rungs in the order above.
ASHA_STOPS = {"A": 9, "B": 1, "C": 1, "D": 1, "L": 1, "X": 1}
MOASHA_STOPS = {"A": 9, "B": 9, "C": 1, "D": 3, "L": 9, "X": 1}


def val_top1(start: float, epoch: int) -> float:
    """Every curve rises by the same 0.15 towards its plateau, so rankings hold across epochs."""
    return start + 0.15 * (1 - 1 / epoch)


def result(epoch: int, accuracy: float, madds: float) -> dict[str, float]:
    return {"training_iteration": epoch, "val_top1": accuracy, "madds": madds}


def stub_trial(trial_id: str) -> Trial:
    """A real Tune trial that needs no registered trainable and no running Ray."""
    return Trial("__fake", trial_id=trial_id, stub=True)


def run_scripted(scheduler: TrialScheduler) -> dict[str, int]:
    """Epoch by epoch over the live trials, as Tune calls a scheduler; the last epoch each ran."""
    live = {name: stub_trial(name) for name in CURVES}
    for trial in live.values():
        scheduler.on_trial_add(None, trial)
    last_epoch = {}
    for epoch in range(1, MAX_T + 1):
        for name in list(live):
            start, madds = CURVES[name]
            report = result(epoch, val_top1(start, epoch), madds)
            last_epoch[name] = epoch
            if scheduler.on_trial_result(None, live[name], report) == TrialScheduler.STOP:
                scheduler.on_trial_complete(None, live.pop(name), report)
    return last_epoch


def moasha(**overrides: Any) -> MOASHA:
    keys = ("time_attr", "max_t", "grace_period", "reduction_factor", "objectives")
    return MOASHA(**{**{k: SETTINGS[k] for k in keys}, **overrides})


def test_moasha_keeps_the_low_madds_trial_that_asha_stops() -> None:
    asha = make_scheduler("asha", **SETTINGS)
    assert isinstance(asha, AsyncHyperBandScheduler)
    assert run_scripted(asha)["L"] == 1
    assert run_scripted(make_scheduler("moasha", **SETTINGS))["L"] == MAX_T


def test_scripted_curves_stop_where_expected() -> None:
    """C and X fall at epoch 1; at epoch 3, D shares a layer below A with B, one place open."""
    assert run_scripted(make_scheduler("asha", **SETTINGS)) == ASHA_STOPS
    scheduler = moasha()
    assert run_scripted(scheduler) == MOASHA_STOPS
    assert [sorted(rung.recorded) for rung in scheduler.rungs] == [
        sorted(CURVES),
        ["A", "B", "D", "L"],
    ]
    assert "num_stopped=3" in scheduler.debug_string()
    assert "t=1: 6 recorded | t=3: 4 recorded" in scheduler.debug_string()


class TestRungRule:
    def test_fewer_than_eta_results_continue(self) -> None:
        rung = _MORung(milestone=1, reduction_factor=3)
        assert rung.decide("best", np.array([0.0, 0.0]))
        assert rung.decide("dominated", np.array([1.0, 1.0]))
        assert not rung.decide("dominated again", np.array([2.0, 2.0]))

    def test_the_whole_first_front_survives(self) -> None:
        rung = _MORung(milestone=1, reduction_factor=3)
        front = [np.array([float(i), float(5 - i)]) for i in range(6)]
        assert all(rung.decide(f"front{i}", loss) for i, loss in enumerate(front))
        assert not rung.decide("dominated", np.array([6.0, 6.0]))

    def test_a_later_layer_survives_while_better_layers_hold_few_trials(self) -> None:
        # c: n=3, ceil(3/2)=2, only `a` is better; d: n=4, ceil(4/2)=2, three are better.
        rung = _MORung(milestone=1, reduction_factor=2)
        assert rung.decide("a", np.array([0.0, 0.0]))
        assert not rung.decide("b", np.array([1.0, 2.0]))  # judged when only `a` was recorded
        assert rung.decide("c", np.array([2.0, 1.0]))
        assert not rung.decide("d", np.array([3.0, 3.0]))

    def test_identical_results_share_a_layer(self) -> None:
        rung = _MORung(milestone=1, reduction_factor=2)
        assert rung.decide("a", np.array([0.5, 7.0]))
        assert rung.decide("twin", np.array([0.5, 7.0]))

    @pytest.mark.parametrize(("loss", "keep"), [(0.15, True), (0.25, False)])
    def test_one_objective_keeps_the_top_ceil_n_over_eta(self, loss: float, keep: bool) -> None:
        # Six results, ceil(6/3) = 2: second best survives, third best does not.
        rung = _MORung(milestone=1, reduction_factor=3)
        for i, recorded in enumerate([0.3, 0.2, 0.4, 0.1, 0.5]):
            rung.decide(f"t{i}", np.array([recorded]))
        assert rung.decide("new", np.array([loss])) is keep


class TestBookkeeping:
    @pytest.mark.parametrize(
        ("grace_period", "max_t", "eta", "milestones"),
        [(1, 9, 3, [1, 3]), (2, 20, 2, [2, 4, 8, 16]), (1, 10, 3, [1, 3, 9]), (5, 5, 2, [])],
    )
    def test_milestones_lie_below_max_t(
        self, grace_period: int, max_t: int, eta: int, milestones: list[int]
    ) -> None:
        scheduler = moasha(grace_period=grace_period, max_t=max_t, reduction_factor=eta)
        assert [rung.milestone for rung in scheduler.rungs] == milestones

    def test_a_trial_is_recorded_once_at_the_highest_rung_reached(self) -> None:
        scheduler = moasha()
        steady, jumper = stub_trial("steady"), stub_trial("jumper")
        for epoch in (1, 2):
            scheduler.on_trial_result(None, steady, result(epoch, 0.5 + epoch, 100))
        scheduler.on_trial_result(None, jumper, result(5, 0.9, 100))
        first, third = scheduler.rungs
        assert first.recorded.keys() == {"steady"}
        assert first.recorded["steady"].tolist() == [-1.5, 100]  # epoch 1, maximise negated
        assert third.recorded.keys() == {"jumper"}

    def test_max_t_stops_without_counting_as_early(self) -> None:
        scheduler = moasha()
        trial = stub_trial("done")
        assert scheduler.on_trial_result(None, trial, result(MAX_T, 0.9, 100)) == "STOP"
        assert "num_stopped=0" in scheduler.debug_string()

    def test_results_without_every_objective_are_ignored(self) -> None:
        scheduler = moasha()
        trial = stub_trial("quiet")
        report = {"training_iteration": 1, "val_top1": 0.9}
        assert scheduler.on_trial_result(None, trial, report) == TrialScheduler.CONTINUE
        assert not scheduler.rungs[0].recorded

    def test_a_final_result_is_recorded_on_completion(self) -> None:
        scheduler = moasha()
        scheduler.on_trial_complete(None, stub_trial("t"), result(3, 0.9, 100))
        assert scheduler.rungs[1].recorded.keys() == {"t"}

    def test_nan_is_worst_in_every_objective(self) -> None:
        scheduler = moasha(reduction_factor=2)
        scheduler.on_trial_result(None, stub_trial("ok"), result(1, 0.5, 300))
        diverged = stub_trial("diverged")
        assert scheduler.on_trial_result(None, diverged, result(1, math.nan, 10)) == "STOP"


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"reduction_factor": 1.5}, "reduction_factor"),
        ({"objectives": []}, "objectives"),
        ({"objectives": [("val_top1", "max"), ("madds", "minimize")]}, r"objectives\[1\]\.mode"),
        ({"objectives": [("madds", "min"), ("madds", "min")]}, r"objectives\[1\]\.metric"),
        ({"grace_period": 0}, "grace_period"),
        ({"max_t": 0}, "max_t"),
    ],
)
def test_bad_moasha_arguments_name_the_parameter(overrides: dict[str, Any], path: str) -> None:
    with pytest.raises(ValueError, match=f"^{path}: "):
        make_scheduler("moasha", **{**SETTINGS, **overrides})


@pytest.mark.parametrize(
    ("name", "overrides", "path"),
    [
        ("asha", {"mode": "up"}, "mode"),
        ("asha", {"reduction_factor": 1}, "reduction_factor"),
        ("hyperband", {}, "name"),
    ],
)
def test_bad_scheduler_arguments_name_the_parameter(
    name: SchedulerName, overrides: dict[str, Any], path: str
) -> None:
    with pytest.raises(ValueError, match=f"^{path}: "):
        make_scheduler(name, **{**SETTINGS, **overrides})


def test_fifo_by_name() -> None:
    assert type(make_scheduler("fifo", **SETTINGS)) is FIFOScheduler


def test_tune_config_metric_must_be_an_objective() -> None:
    scheduler = moasha()
    assert scheduler.metric == "val_top1"
    assert scheduler.set_search_properties(None, None)
    assert scheduler.set_search_properties("madds", "min")
    assert scheduler.set_search_properties("val_top1", None)
    assert not scheduler.set_search_properties("madds", "max")
    assert not scheduler.set_search_properties("val_loss", "min")


def scripted(config: dict[str, Any]) -> None:
    """A function trainable that reports the scripted curve `config["name"]`."""
    start, madds = CURVES[config["name"]]
    for epoch in range(1, MAX_T + 1):
        tune.report({"val_top1": val_top1(start, epoch), "madds": madds})


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # Ray's workers cannot import a test module, so its functions travel by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.usefixtures("local_ray")
@pytest.mark.parametrize(("name", "stops"), [("asha", ASHA_STOPS), ("moasha", MOASHA_STOPS)])
def test_tune_run_stops_the_scripted_trials(
    tmp_path: Path, name: SchedulerName, stops: dict[str, int]
) -> None:
    tuner = tune.Tuner(
        scripted,
        param_space={"name": tune.grid_search(list(CURVES))},
        # One trial at a time keeps the order in which trials reach a rung deterministic.
        tune_config=tune.TuneConfig(
            scheduler=make_scheduler(name, **SETTINGS), max_concurrent_trials=1, reuse_actors=True
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0),
    )
    grid = tuner.fit()
    assert not grid.errors
    assert {r.config["name"]: r.metrics["training_iteration"] for r in grid} == stops
