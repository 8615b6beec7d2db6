"""One study process started by the service: `python -m service.worker --study-id N ...`.

It runs (or resumes) the study with `workers.tune.run_study` as a Ray driver on the service's
cluster. Exit 0: every candidate finished; 3: some trials failed (resume runs the remainder).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

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
        doc = row.spec
    engine.dispose()
    spec = parse_study(doc)
    if spec.data_dir is None and args.data_dir:
        spec = spec.model_copy(update={"data_dir": args.data_dir})
    print(f"study {args.study_id} ({spec.name}): running on Ray at {args.ray_address}", flush=True)
    outcome = run_study(spec, storage_url=args.db, results_dir=args.results_dir,
                        ray_address=args.ray_address)
    p_ = outcome.progress
    print(f"finished {p_.finished}/{p_.n_trials}: {p_.to_dict()}", flush=True)
    if p_.finished < p_.n_trials or p_.baselines_done < p_.baselines_total:
        print(f"{p_.failed} trial(s) failed; resume the study to run the remainder",
              file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
