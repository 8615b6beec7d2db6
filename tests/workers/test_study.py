"""Study spec validation and one end-to-end study on the synthetic dataset with a real local Ray."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from objectives import cost_report
from search_space import load_arch
from search_space.errors import ArchError
from workers.study import load_study, parse_study

EXAMPLE = Path(__file__).parents[2] / "examples" / "synthetic_small.json"


def test_example_study_validates() -> None:
    spec = load_study(EXAMPLE)
    assert spec.metrics == ["val_top1", "madds"] and spec.modes == ["max", "min"]


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"space": "nope"}, "space"),
        ({"space": {"format": "clnas.space/1"}}, "space.name"),
        ({"objectives": ["madds"]}, "<root>"),
        ({"search": {"sampler": "grid"}}, "search.sampler"),
        ({"search": {"n_trials": 0}}, "search.n_trials"),
        ({"search": {"gpus_per_trial": -0.5}}, "search.gpus_per_trial"),
        ({"budget": {"max_madds": 0}}, "budget.max_madds"),
        ({"proxy": {"epochs": "3"}}, "proxy.epochs"),
        ({"baselines": ["resnet50"]}, "baselines[0]"),
        ({"name": "bad name!"}, "name"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_study_names_the_path(patch: dict, path: str) -> None:
    doc = json.loads(EXAMPLE.read_text()) | patch
    with pytest.raises(ArchError) as info:
        parse_study(doc)
    assert path in info.value.paths, info.value.problems


@pytest.mark.slow
def test_small_synthetic_study_end_to_end(tmp_path: Path) -> None:
    import ray

    from workers.tune import REJECTED_ATTR, run_study

    spec = load_study(EXAMPLE).model_copy(update={"data_dir": str(tmp_path / "data")})
    url = f"sqlite:///{tmp_path / 'study.db'}"
    try:
        out = run_study(spec, storage_url=url, results_dir=tmp_path / "ray")
    finally:
        ray.shutdown()
    study = optuna.load_study(study_name=spec.name, storage=url)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert out.progress.finished == len(complete) + len(pruned) == spec.search.n_trials
    assert len(study.trials) == spec.search.n_trials  # nothing failed, nothing extra
    for t in pruned:  # stopped by MOASHA at a rung: curve kept, never on the front
        assert len(t.user_attrs["curve"]) == t.user_attrs["pruned_at_epoch"] < spec.proxy.epochs
    # the baselines: trained with the same recipe into their own study
    base = optuna.load_study(study_name=f"{spec.name}.baselines", storage=url)
    assert [t.user_attrs["baseline"] for t in base.trials] == spec.baselines
    assert [t.number for t in out.baselines] == [t.number for t in base.trials]
    for t in base.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert len(t.user_attrs["curve"]) == spec.proxy.epochs
        assert t.values[1] == cost_report(load_arch(t.user_attrs["baseline"])).madds
    rejected = [t for t in complete if REJECTED_ATTR in t.user_attrs]
    trained = [t for t in complete if REJECTED_ATTR not in t.user_attrs]
    assert rejected and trained
    for t in rejected:  # rejected: real cost over budget, the reason stored, no curve
        assert t.user_attrs["cost"]["madds"] > spec.budget.max_madds
        assert t.user_attrs[REJECTED_ATTR][0]["constraint"] == "madds"
        assert "curve" not in t.user_attrs
    for t in trained:
        load_arch(t.user_attrs["arch"])
        assert len(t.user_attrs["curve"]) >= 1 and t.user_attrs["curve"][0]["synthetic"]
    assert {t.number for t in out.front} == {t.number for t in study.best_trials}
    assert all(REJECTED_ATTR not in t.user_attrs for t in out.front)
