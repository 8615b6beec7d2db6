"""How long the service takes to read a large study: the shared snapshot (`service/store.py`:
one Core query per Optuna table, cached while the study's rows are unchanged) against the same
answers computed through Optuna's storage API (`study_progress` + `best_trials` + every trial,
what the REST endpoints did before), side by side on one seeded SQLite store.

    python benchmarks/api_reads.py                   # 2,000 trials
    python benchmarks/api_reads.py --trials 5000 --db /tmp/reads.db   # keep (and reuse) the store

Prints each path's median over `--repeats` and the ratios snapshot / storage API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the seeding helper lives in the test suite

from service.db import make_engine, migrate  # noqa: E402
from service.store import SnapshotCache  # noqa: E402
from tests.service.conftest import seed_study  # noqa: E402
from workers.study import parse_study  # noqa: E402
from workers.tune import front_trials, open_storage, study_progress  # noqa: E402

EXAMPLE = json.loads((ROOT / "examples" / "synthetic_small.json").read_text())


def _median(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--db", help="SQLite file to seed (reused when it already holds the study)")
    args = ap.parse_args()
    path = Path(args.db or Path(tempfile.mkdtemp(prefix="clnas-reads-")) / "reads.db")
    url = f"sqlite:///{path}"
    doc = EXAMPLE | {
        "name": f"reads-{args.trials}",
        "budget": {"max_madds": 40_000_000},
        "search": EXAMPLE["search"] | {"n_trials": args.trials},
    }
    spec = parse_study(doc)
    storage = open_storage(url)
    have = 0
    with contextlib.suppress(KeyError):
        have = len(optuna.load_study(study_name=spec.name, storage=storage).trials)
    if have < args.trials:
        print(f"seeding {args.trials} trials into {path} (minutes) ...", flush=True)
        seed_study(url, doc, args.trials - have, seed=have)

    def storage_api() -> None:  # progress + front + every trial, through Optuna
        study_progress(storage, spec)
        front_trials(storage, spec.name)
        optuna.load_study(study_name=spec.name, storage=storage).get_trials(deepcopy=False)

    migrate(url)  # the service's tables (jobs: promotions are part of a snapshot)
    engine = make_engine(url)
    fresh = _median(lambda: SnapshotCache(engine).get(1, "completed", spec), args.repeats)
    cache = SnapshotCache(engine)
    cache.get(1, "completed", spec)
    cached = _median(lambda: cache.get(1, "completed", spec), args.repeats)
    slow = _median(storage_api, args.repeats)
    print(f"{args.trials} trials, median of {args.repeats}:")
    print(f"  Optuna storage API      {slow * 1e3:9.1f} ms   1.000")
    print(f"  snapshot, first read    {fresh * 1e3:9.1f} ms   {fresh / slow:.4f}")
    print(f"  snapshot, unchanged     {cached * 1e3:9.1f} ms   {cached / slow:.4f}")


if __name__ == "__main__":
    main()
