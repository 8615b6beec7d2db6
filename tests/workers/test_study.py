"""Study spec validation and one end-to-end study on the synthetic dataset with a real local Ray."""

from __future__ import annotations

import json
import os
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


def test_progress_says_what_fell_short() -> None:
    from workers.tune import StudyProgress

    done = StudyProgress(n_trials=4, rejected=1, completed=2, pruned=1, baselines_done=1,
                         baselines_total=1)
    assert done.shortfall() is None
    short = StudyProgress(n_trials=4, completed=1, failed=3, baselines_total=2, baselines_done=1)
    assert short.shortfall() == ("3 of 4 candidates and 1 of 2 baselines did not finish "
                                 "(3 candidate trial(s) failed); run the study again to resume it")
    stopped = StudyProgress(n_trials=4, completed=4, baselines_total=1)
    assert stopped.shortfall() == (
        "1 of 1 baselines did not finish; run the study again to resume it")


def _cifar_study(tmp_path: Path) -> Path:
    """The example study on CIFAR-100, with a CIFAR-100 archive in `tmp_path/data` that is in
    the real format but not the official file (its md5 differs)."""
    from workers.data import CIFAR100, write_cifar100_archive

    write_cifar100_archive(tmp_path / "data" / CIFAR100.archive, n_train=60, n_test=20)
    doc = json.loads(EXAMPLE.read_text()) | {"dataset": "cifar100", "name": "needs-data"}
    path = tmp_path / "cifar.json"
    path.write_text(json.dumps(doc))
    return path


def test_search_with_bad_data_fails_before_any_trial(tmp_path: Path) -> None:
    """The driver checks the data once (workers.tune._prepare_data), before Ray starts and
    before any trial, and names the file; a relative --data-dir is the working directory's."""
    import subprocess
    import sys

    study = _cifar_study(tmp_path)
    clnas = str(Path(sys.executable).with_name("clnas"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a private local Ray
    run = subprocess.run([clnas, "search", str(study), "--db", "sqlite:///s.db", "--data-dir",
                          "data", "--json"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env=env)
    assert run.returncode == 2, run.stdout + run.stderr
    archive = tmp_path / "data" / "cifar-100-python.tar.gz"
    assert run.stderr.startswith(f"error: {archive} has md5 "), run.stderr
    assert "delete it and download it again" in run.stderr
    assert run.stdout == ""
    study_ = optuna.load_study(study_name="needs-data", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert study_.trials == []  # nothing sampled


@pytest.mark.slow
def test_bad_data_fails_a_study_on_a_one_machine_cluster(tmp_path: Path) -> None:
    """On a cluster whose nodes all run on this machine (`clnas serve`'s own head), a driver
    that cannot prepare the data fails the study before any trial, as on a private Ray."""
    import ray
    from ray.cluster_utils import Cluster

    from workers.data import DatasetError
    from workers.tune import run_study

    spec = load_study(_cifar_study(tmp_path)).model_copy(
        update={"data_dir": str(tmp_path / "data")})
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    try:
        with pytest.raises(DatasetError, match="has md5"):
            run_study(spec, storage_url=url, results_dir=tmp_path / "ray",
                      ray_address=cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
    study = optuna.load_study(study_name=spec.name, storage=url)
    assert study.trials == []


def test_trials_get_a_relative_data_dir_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trials run in Ray's working directories: a relative data_dir becomes the driver's
    absolute one; no data_dir and `~/...` stay as given (each node's own, on a cluster). The
    driver prepares the folder it sees either way."""
    from workers.data import synthetic
    from workers.tune import _prepare_data

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLNAS_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setitem(synthetic.DEFAULT_SIZE, "n_train", 300)
    monkeypatch.setitem(synthetic.DEFAULT_SIZE, "n_test", 50)
    spec = load_study(EXAMPLE)
    for given, passed, prepared in [("rel", str(tmp_path / "rel"), tmp_path / "rel"),
                                    ("~/d", "~/d", tmp_path / "home" / "d"),
                                    (None, None, tmp_path / "env")]:
        ready, error = _prepare_data(spec.model_copy(update={"data_dir": given}))
        assert error is None and ready.data_dir == passed
        assert (prepared / "synthetic" / "cifar-100-python.tar.gz").is_file()
