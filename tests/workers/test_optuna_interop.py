"""What Ray ships between processes pickles; Optuna's own tools (optuna-dashboard) see our
studies with named objectives. (Concurrent storage creation: tests/service/test_database.py.)"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from ray import cloudpickle, tune

from tests.service.conftest import free_port
from workers.schedulers import make_scheduler
from workers.study import load_study
from workers.tune import (
    ARCH_ATTR,
    PRUNED_AT_ATTR,
    ClnasSearch,
    StudyConflict,
    _baseline_trainable,
    _trainable,
    open_storage,
    prepare_studies,
)

EXAMPLE = Path(__file__).parents[2] / "examples" / "synthetic_small.json"


def _spec(tmp_path: Path, **search: object):  # type: ignore[no-untyped-def]
    spec = load_study(EXAMPLE).model_copy(update={"data_dir": str(tmp_path / "data")})
    if search:
        spec = spec.model_copy(update={"search": spec.search.model_copy(update=search)})
    return spec


def test_searcher_pickles_after_the_study_started(tmp_path: Path) -> None:
    spec = _spec(tmp_path, n_trials=6)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    prepare_studies(open_storage(url), spec)
    searcher = ClnasSearch(spec, url)
    first = searcher.suggest("tune-a")  # opens the storage, samples, may reject some
    assert first is not None and first != "FINISHED"
    searcher.on_trial_complete("tune-a", {"epoch": spec.proxy.epochs, "val_top1": 0.3,
                                          "madds": first["cost"]["madds"]})
    second = searcher.suggest("tune-b")  # left running: its mapping must travel
    assert second is not None

    # what Tune does at Tuner(...) and at each experiment checkpoint, and plain pickle
    copies = [cloudpickle.loads(cloudpickle.dumps(searcher)),
              pickle.loads(pickle.dumps(searcher))]
    for copy in copies:
        assert copy._handles is None  # no storage, engine, lock or thread travels
        assert copy._numbers == searcher._numbers
    # the copy carries on: tells the running trial (stopped at epoch 1), samples again
    copies[0].on_trial_complete("tune-b", {"epoch": 1, "val_top1": 0.1, "madds": 1})
    assert copies[1].suggest("tune-c") is not None  # reopens the study lazily
    ckpt = tmp_path / "searcher.pkl"
    searcher.save(str(ckpt))
    restored = ClnasSearch(spec, url)
    restored.restore(str(ckpt))
    assert restored._numbers == searcher._numbers

    study = optuna.load_study(study_name=spec.name, storage=url)
    by_state = {s: [t for t in study.trials if t.state == s] for s in TrialState}
    trained = [t for t in by_state[TrialState.COMPLETE] if t.values[0] == 0.3]
    assert len(trained) == 1 and trained[0].user_attrs[ARCH_ATTR] == first["arch"]
    pruned = by_state[TrialState.PRUNED]
    assert len(pruned) == 1 and pruned[0].user_attrs[PRUNED_AT_ATTR] == 1


def test_what_ray_ships_to_workers_pickles(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    scheduler = make_scheduler("moasha", metric="val_top1", mode="max", time_attr="epoch",
                               max_t=3, grace_period=1, reduction_factor=2,
                               objectives=[("val_top1", "max"), ("madds", "min")])
    for fn in (_trainable, _baseline_trainable):
        trainable = tune.with_parameters(fn, spec_json=spec.model_dump_json(), storage_url=url)
        cloudpickle.loads(cloudpickle.dumps(trainable))
    cloudpickle.loads(cloudpickle.dumps(scheduler))


def test_studies_carry_metric_names(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    prepare_studies(open_storage(url), spec)
    for name in (spec.name, f"{spec.name}.baselines"):
        assert optuna.load_study(study_name=name, storage=url).metric_names == spec.metrics


def _dashboard(db: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = Path(sys.executable).with_name("optuna-dashboard")
    port = free_port()
    proc = subprocess.Popen([str(exe if exe.exists() else shutil.which("optuna-dashboard")),
                             f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/studies", timeout=2)
            return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("optuna-dashboard did not start") from None
            time.sleep(0.2)


def test_optuna_dashboard_shows_named_objectives(tmp_path: Path) -> None:
    """optuna-dashboard, a client we did not write, reads a clnas database directly."""
    spec = _spec(tmp_path)
    db = tmp_path / "clnas.db"
    prepare_studies(open_storage(f"sqlite:///{db}"), spec)
    study = optuna.load_study(study_name=spec.name, storage=f"sqlite:///{db}")
    study.tell(study.ask(), [0.42, 5_000_000.0])
    proc, base = _dashboard(db)
    try:
        summaries = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=10))
        ids = {s["study_name"]: s["study_id"] for s in summaries["study_summaries"]}
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{ids[spec.name]}",
                                                  timeout=10))
        assert detail["objective_names"] == spec.metrics == ["val_top1", "madds"]
        assert detail["directions"] == ["maximize", "minimize"]
        assert [t["values"] for t in detail["trials"]] == [[0.42, 5_000_000.0]]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.browser
def test_optuna_dashboard_page_names_objectives(tmp_path: Path) -> None:
    """The same, as a user sees it: optuna-dashboard's study page in headless Chromium."""
    from tests.service.browser import chromium

    spec = _spec(tmp_path)
    db = tmp_path / "clnas.db"
    prepare_studies(open_storage(f"sqlite:///{db}"), spec)
    study = optuna.load_study(study_name=spec.name, storage=f"sqlite:///{db}")
    study.tell(study.ask(), [0.42, 5_000_000.0])
    proc, base = _dashboard(db)
    try:
        sid = {s["study_name"]: s["study_id"] for s in json.load(
            urllib.request.urlopen(f"{base}/api/studies", timeout=10))["study_summaries"]}
        with chromium() as browser:
            page = browser.new_page()
            # The study page's Pareto-front plot names its axes by the study's metric names
            # ("Objective 0" / "Objective 1" when a study has none).
            page.goto(f"{base}/dashboard/studies/{sid[spec.name]}")
            page.get_by_text("Objective Y:").first.wait_for(timeout=60_000)
            page.wait_for_function(
                "() => /Objective Y:\\s*madds/.test(document.body.innerText)", timeout=60_000)
            text = page.inner_text("body")
            assert re.search(r"Objective X:\s*val_top1", text), text[:2000]
            assert re.search(r"Objective Y:\s*madds", text), text[:2000]
            assert "Objective 0" not in text and "Objective 1" not in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_study_stored_before_the_device_fields_resumes(tmp_path: Path) -> None:
    """A study written before the proxy recipe had `memory_format` (its spec says `amp: true`,
    which then meant "on CUDA only") reopens with today's spec; what it searches may not change."""
    spec = _spec(tmp_path)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url)
    prepare_studies(storage, spec)
    study = optuna.load_study(study_name=spec.name, storage=storage)
    legacy = spec.model_dump(mode="json")
    del legacy["proxy"]["memory_format"]
    legacy["proxy"]["amp"] = True
    study.set_user_attr("spec", legacy)

    prepare_studies(storage, spec)  # no StudyConflict
    assert study.user_attrs["spec"] == spec.model_dump(mode="json")

    changed = spec.model_copy(update={"proxy": spec.proxy.model_copy(update={"epochs": 3})})
    with pytest.raises(StudyConflict, match="different spec"):
        prepare_studies(storage, changed)
