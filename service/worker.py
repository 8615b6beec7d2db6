"""One study process started by the service: `python -m service.worker --study-id N ...`.

It runs (or resumes) the study with `workers.tune.run_study` as a Ray driver on the service's
cluster and writes its own outcome into its run (docs/api.md#run-lifecycle): `completed` when
every candidate finished, `failed` with the reason otherwise (resume runs the remainder). Exit
0: completed; 3: some trials failed; 1: the run raised; 2: the study is gone. A process that
dies without writing (killed, out of memory) is marked `failed` by the runner.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
from typing import Any

from sqlalchemy.engine import Engine

from service import lifecycle
from service.db import StudyRow, make_engine, sessions
from workers.study import parse_study
from workers.tune import run_study


def watch_parent(parent: int) -> None:
    """Exit when the service that started us is gone (belt and braces to PDEATHSIG)."""
    while True:
        time.sleep(1)
        if os.getppid() != parent:
            os._exit(137)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.worker")
    p.add_argument("--study-id", type=int, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--ray-address", required=True)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    engine = make_engine(args.db)
    with sessions(engine)() as s:
        row = s.get(StudyRow, args.study_id)
        if row is None:
            print(f"study {args.study_id} not found", file=sys.stderr)
            return 2
        run_id, doc = row.run_id, row.spec  # the one stored copy of the spec (issue 17)
    try:
        spec = parse_study(doc)
        if spec.data_dir is None and args.data_dir:
            spec = spec.model_copy(update={"data_dir": args.data_dir})
        print(f"study {args.study_id} ({spec.name}): running on Ray at {args.ray_address}",
              flush=True)
        outcome = run_study(spec, storage_url=args.db, results_dir=args.results_dir,
                            ray_address=args.ray_address)
    except Exception as exc:
        traceback.print_exc()
        _finish(engine, run_id, "failed", f"{type(exc).__name__}: {exc}")
        return 1
    p_ = outcome.progress
    print(f"finished {p_.finished}/{p_.n_trials}: {p_.to_dict()}", flush=True)
    if (error := p_.shortfall()) is not None:
        print(error, file=sys.stderr)
        _finish(engine, run_id, "failed", error, p_.to_dict())
        return 3
    _finish(engine, run_id, "completed", None, p_.to_dict())
    return 0


def _finish(engine: Engine, run_id: int, status: str, error: str | None,
            progress: dict[str, Any] | None = None) -> None:
    with sessions(engine).begin() as s:
        lifecycle.finish(s, run_id, status, error, progress)
    engine.dispose()

if __name__ == "__main__":
    sys.exit(main())
