"""Issue 4, acceptance 4: `clnas search` killed with SIGKILL mid-study and re-run with the same
command resumes the study without losing or duplicating a completed trial (real local Ray,
real SQLite, the installed console script)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from workers.study import load_study
from workers.tune import open_storage

CLNAS = str(Path(sys.executable).with_name("clnas"))
EXAMPLE = Path(__file__).parents[2] / "examples" / "synthetic_small.json"
DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _snapshot(url: str, name: str) -> dict[int, Any]:
    # through `open_storage`, as every clnas process: while `clnas search` is still creating
    # Optuna's tables, a bare `load_study(storage=url)` would create them too and race it
    storage = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        return {
            t.number: (t.state.name, t.values, t.user_attrs.get("arch"), t.user_attrs.get("curve"))
            for t in study.get_trials(deepcopy=False)
        }
    except KeyError:
        return {}
    finally:
        storage.engine.dispose()


@pytest.mark.slow
def test_kill_and_rerun_resumes_without_losing_or_duplicating(tmp_path: Path) -> None:
    spec = load_study(EXAMPLE)
    db = tmp_path / "clnas.db"
    url = f"sqlite:///{db}"
    # a relative --data-dir: the trials, in Ray's working directories, must still read tmp_path/data
    cmd = [CLNAS, "search", str(EXAMPLE), "--db", url, "--data-dir", "data",
           "--results-dir", str(tmp_path / "ray")]
    # Ray's own temp dir, short (AF_UNIX socket paths are limited to 107 bytes)
    env = os.environ | {"RAY_TMPDIR": tempfile.mkdtemp(prefix="clnas-ray-", dir="/tmp")}
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
    deadline = time.time() + 420
    before: dict[int, Any] = {}
    try:
        while time.time() < deadline and first.poll() is None:
            time.sleep(1)
            snap = _snapshot(url, spec.name) if db.exists() else {}
            states = [s for s, *_ in snap.values()]
            trained = [n for n, (s, _, _, c) in snap.items() if s in ("COMPLETE", "PRUNED") and c]
            if trained and "RUNNING" in states:
                break
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(first.pid, signal.SIGKILL)  # driver, Ray's raylet/GCS and its workers
        first.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        log.close()
    before = _snapshot(url, spec.name)
    done_before = {n: v for n, v in before.items() if v[0] in ("COMPLETE", "PRUNED")}
    running_before = {n for n, v in before.items() if v[0] == "RUNNING"}
    assert done_before and running_before
    assert len(done_before) < spec.search.n_trials  # really killed mid-study

    second = subprocess.run([*cmd, "--json"], cwd=tmp_path, capture_output=True, text=True,
                            env=env, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    outcome = json.loads(second.stdout)
    after = _snapshot(url, spec.name)
    # every trial finished before the kill is still there, unchanged
    for n, v in done_before.items():
        assert after[n] == v
    # the trials the kill interrupted are marked FAIL, not counted, not re-told
    assert {n for n, v in after.items() if v[0] == "FAIL"} == running_before
    done_after = [n for n, v in after.items() if v[0] in ("COMPLETE", "PRUNED")]
    assert len(done_after) == spec.search.n_trials == outcome["progress"]["finished"]
    assert len(after) == spec.search.n_trials + len(running_before)  # nothing sampled twice
    study = optuna.load_study(study_name=spec.name, storage=url)
    assert sorted(f["number"] for f in outcome["front"]) == sorted(
        t.number for t in study.best_trials
    )
    base = optuna.load_study(study_name=f"{spec.name}.baselines", storage=url)
    done = [t.user_attrs["baseline"] for t in base.trials if t.state in DONE]
    assert done == spec.baselines  # each baseline trained exactly once
    # the driver made the data ready once, where the command's working directory says
    assert (tmp_path / "data" / "synthetic" / "cifar-100-python.tar.gz").is_file()
    assert not list(Path(env["RAY_TMPDIR"]).rglob("*.tar.gz"))  # no trial made its own copy
