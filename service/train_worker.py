"""One promoted full training started by the service: `python -m service.train_worker
--job-id N ...` (issue 7).

A Ray driver on the service's cluster that trains the trial's arch with `train_full`, writing
per-epoch progress into its run and the curve into its `clnas_jobs` row, and at the end its own
outcome (docs/api.md#run-lifecycle). The run's files live in
`<results-dir>/train/job-<N>`; when that directory already holds the run (the service was
stopped or killed meanwhile), it resumes from the last checkpoint. Exit 0: the run reached its
last epoch and its result is stored (`completed`); 2: the job is gone, or its trial (`failed`);
1 or 3: the training raised or stopped early (`failed`); a process that dies without writing
is marked `failed` by the runner.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from service import lifecycle
from service.db import JobRow, make_engine, sessions
from service.worker import watch_parent
from workers.full.loop import EpochMetrics, Progress
from workers.full.train import JOB_FILE, FullResult, train_full
from workers.tune import ARCH_ATTR, open_storage

STEP_WRITE_INTERVAL_S = 5.0  # step events are throttled; every epoch's end is written


def job_dir(results_dir: str | Path, job_id: int, run: str | None = None) -> Path:
    """The job's run folder; `run` (a token made at promotion) keeps a job whose id SQLite
    handed out again after a delete from resuming the deleted job's run."""
    return Path(results_dir) / "train" / (f"job-{job_id}-{run}" if run else f"job-{job_id}")


def curve_point(m: EpochMetrics) -> dict[str, Any]:
    """One epoch for the API: `top1`, `top5`, `loss` are the accuracies and loss the result
    reports (the EMA model's when the recipe keeps an EMA), beside the raw metrics."""
    ema = m["ema_val_top1"] is not None
    return {
        "epoch": m["epoch"],
        "top1": m["ema_val_top1"] if ema else m["val_top1"],
        "top5": m["ema_val_top5"] if ema else m["val_top5"],
        "loss": m["ema_val_loss"] if ema else m["val_loss"],
        **{k: v for k, v in m.items() if k != "epoch"},
    }


def result_json(r: FullResult) -> dict[str, Any]:
    def path(p: Path | None) -> str | None:
        return None if p is None else str(p.resolve())

    return {
        "top1": r.val_top1,
        "top5": r.val_top5,
        "epochs": r.epochs,
        "synthetic": r.synthetic,
        "arch": r.arch,
        "recipe": r.recipe,
        "workers": r.workers,
        "num_classes": r.num_classes,
        "image_size": r.image_size,
        "train_images": r.train_images,
        "val_images": r.val_images,
        "out_dir": path(r.out_dir),
        "checkpoint": path(r.checkpoint),
        "metrics": path(r.metrics_path),
        "arch_file": path(r.arch_path),
        "weights": path(r.weights_path),
        "onnx": path(r.onnx_path),
        "onnx_max_abs_diff": r.onnx_max_abs_diff,
        "wall_s": r.wall_s,
    }


class JobRecorder:
    """Writes a running job's progress (into its run) and curve (into its job row) from Ray's
    progress thread. Writes are conditional on the run still being `running`, so a cancelled
    job stays so."""

    def __init__(self, factory: sessionmaker[Session], job_id: int, run_id: int,
                 curve: list[dict[str, Any]]):
        self.sessions = factory
        self.job_id, self.run_id = job_id, run_id
        self.curve = curve
        self.written = 0.0

    def _write(self, progress: dict[str, Any], curve: list[dict[str, Any]] | None = None,
               **job: Any) -> bool:
        with self.sessions.begin() as s:
            if not lifecycle.write_progress(s, self.run_id, progress):
                return False
            if curve is not None:
                s.execute(update(JobRow).where(JobRow.id == self.job_id)
                          .values(curve=curve, **job))
            return True

    def __call__(self, event: Progress) -> None:
        now = time.monotonic()
        if event.metrics is None and now - self.written < STEP_WRITE_INTERVAL_S:
            return
        self.written = now
        done = event.epoch if event.metrics is not None else event.epoch - 1
        progress = {"epoch": done, "epochs": event.epochs, "step": event.step,
                    "steps": event.steps}
        if event.metrics is None:
            self._write(progress)
            return
        # a resumed run redoes an epoch whose checkpoint was not written: replace, not append
        self.curve = [p for p in self.curve if p["epoch"] < event.epoch]
        self.curve.append(curve_point(event.metrics))
        self._write(progress, self.curve)

    def finish(self, r: FullResult) -> None:
        """The final curve and progress, then the outcome: `completed` with the result once
        the last epoch is reached, else `failed` (the runner must not guess)."""
        self.curve = [curve_point(m) for m in r.history]
        progress = {"epoch": r.epochs, "epochs": r.target_epochs, "step": None, "steps": None}
        job = {"result": result_json(r)} if r.completed else {}
        if not self._write(progress, self.curve, **job):
            return  # cancelled meanwhile
        error = None if r.completed else (f"stopped after {r.epochs} of {r.target_epochs} "
                                          "epochs; cancel and promote again to retry")
        with self.sessions.begin() as s:
            lifecycle.finish(s, self.run_id, "completed" if r.completed else "failed", error)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.train_worker")
    p.add_argument("--job-id", type=int, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--ray-address", required=True)
    p.add_argument("--results-dir", required=True)
    args = p.parse_args(argv)
    threading.Thread(target=watch_parent, args=(os.getppid(),), daemon=True).start()
    engine = make_engine(args.db)
    factory = sessions(engine)
    with factory() as s:
        row = s.get(JobRow, args.job_id)
        if row is None or row.study is None:
            print(f"train job {args.job_id} not found", file=sys.stderr)
            return 2
        spec, number, study_name = dict(row.spec), row.trial_number, row.study.name
        run_id, curve = row.run_id, list(row.curve or [])

    def fail(error: str, code: int) -> int:
        print(error, file=sys.stderr)
        with factory.begin() as s:
            lifecycle.finish(s, run_id, "failed", error)
        engine.dispose()
        return code

    arch = _trial_arch(args.db, study_name, number)
    if arch is None:
        return fail(f"trial {number} of study {study_name!r} has no arch", 2)
    out = job_dir(args.results_dir, args.job_id, spec.get("run"))
    resume = (out / JOB_FILE).exists()
    print(f"train job {args.job_id}: trial {number} of {study_name!r}, recipe "
          f"{spec['recipe']}, {spec['epochs']} epochs on Ray at {args.ray_address}"
          + (" (resuming)" if resume else ""), flush=True)
    recorder = JobRecorder(factory, args.job_id, run_id, curve)
    try:
        result = train_full(
            arch, spec["data_dir"], spec["recipe"],
            workers=spec["workers"], gpus_per_worker=spec["gpus_per_worker"],
            cpus_per_worker=spec["cpus_per_worker"], epochs=spec["epochs"],
            batch_size=spec["batch_size"], image_size=spec["image_size"], seed=spec["seed"],
            out_dir=out, resume=resume, progress_callback=recorder,
            ray_address=args.ray_address,
        )
    except Exception as exc:
        traceback.print_exc()
        return fail(f"{type(exc).__name__}: {exc}", 1)
    recorder.finish(result)
    engine.dispose()
    print(f"finished {result.epochs}/{result.target_epochs} epochs: top-1 {result.val_top1}",
          flush=True)
    return 0 if result.completed else 3

def _trial_arch(db: str, study_name: str, number: int | None) -> dict[str, Any] | None:
    storage = open_storage(db)
    sid = storage.get_study_id_from_name(study_name)
    for t in storage.get_all_trials(sid, deepcopy=False):
        if t.number == number:
            arch: dict[str, Any] | None = t.user_attrs.get(ARCH_ATTR)
            return arch
    return None


if __name__ == "__main__":
    sys.exit(main())
