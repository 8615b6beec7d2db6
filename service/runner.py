"""Runs outside the request path (issues 5, 7, 17; docs/api.md#run-lifecycle, docs/cluster.md).

- One Ray cluster for the whole service: `--ray-address` joins an existing one; otherwise the
  service starts a local head (`service.ray_head`) that dies with the service.
- Each run is its own process, a Ray driver on that cluster: a search study
  (`python -m service.worker`) or a promoted full training (`python -m service.train_worker`),
  so runs share Ray's resources and a crashing run cannot take the API down.
- One supervisor thread, one path for both kinds: each pass reaps ended processes, stops the
  processes of runs being cancelled, and claims and spawns queued runs. Workers write their
  own outcome (`lifecycle.finish`); the runner writes only what a worker cannot: a process
  that died without writing it (`failed`), a run it stopped (`cancelled`), and on start the
  runs a killed service left `running` (queued again: a study resumes from the Optuna storage
  without losing a completed trial, a train job from its last epoch checkpoint).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from service import lifecycle
from service.db import JobRow, RunRow, StudyRow
from service.ray_head import RayHead, die_with_parent
from service.settings import Settings
from workers.tune import baselines_study_name, close_stale_trials, open_storage

log = logging.getLogger("clnas.service")
# kind -> (worker module, its id flag, log file prefix); logs are `<prefix>-<study|job id>.log`
WORKERS = {"search": ("service.worker", "--study-id", "study"),
           "train": ("service.train_worker", "--job-id", "train")}
STOP_GRACE_S = 10.0  # SIGTERM, then SIGKILL after this long


@dataclass
class Child:
    """A run's process: `subject` is the study's or the job's id (its worker's argument)."""

    run_id: int
    kind: str
    subject: int
    proc: subprocess.Popen[bytes]


class StudyRunner:
    """The supervisor: claims queued runs, spawns their processes, reaps them, stops cancelled
    ones, requeues interrupted ones on start."""

    def __init__(self, settings: Settings, session_factory: sessionmaker[Any],
                 poll_s: float = 1.0, grace_s: float = STOP_GRACE_S):
        self.settings = settings
        self.sessions = session_factory
        self.poll_s, self.grace_s = poll_s, grace_s
        self.log_dir = Path(settings.results_dir) / "logs"
        self.head = RayHead(settings, self.log_dir)
        self.children: dict[int, Child] = {}  # run id -> its process (this thread's only)
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.ray_status = "not started"
        self._storage: optuna.storages.RDBStorage | None = None

    # -- service start and stop ------------------------------------------------------------
    def start(self) -> None:
        self.requeue_interrupted()
        self.thread = threading.Thread(target=self._loop, name="clnas-runner", daemon=True)
        self.thread.start()

    def requeue_interrupted(self) -> None:
        with self.sessions.begin() as s:
            lifecycle.requeue_interrupted(s)

    def stop(self) -> None:
        """Service shutdown: the runs are queued again first (a worker stopped by SIGTERM may
        still report an outcome on its way down; it no longer applies), then the processes
        stop; the next start resumes them."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(30 + self.grace_s)
        with self.sessions.begin() as s:
            lifecycle.requeue(s, list(self.children))
        self._terminate(list(self.children.values()))
        self.children.clear()
        self.head.stop()

    # -- the supervisor --------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.tick()
            except Exception:  # keep supervising; the next pass retries
                log.exception("supervisor pass failed")
            self.stop_event.wait(self.poll_s)

    def tick(self) -> None:
        """One pass: reap, stop what is being cancelled, start what is queued."""
        self._reap()
        self._stop_cancelled()
        self._launch()

    def _reap(self) -> None:
        """Processes that ended: a worker that wrote its outcome is done; one that did not
        crashed (`failed`, with its log's tail); one being cancelled is `cancelled`."""
        for child in [c for c in self.children.values() if c.proc.poll() is not None]:
            del self.children[child.run_id]
            error = self._log_tail(child) or f"exit code {child.proc.returncode}"
            with self.sessions.begin() as s:
                if lifecycle.crashed(s, child.run_id, error):
                    continue
                cancelled = lifecycle.stopped(s, child.run_id)
            if cancelled:
                self._close_trials(child)

    def _stop_cancelled(self) -> None:
        """Stop the processes of runs in `cancelling` (or gone from the database), then mark
        them `cancelled`, all within this pass: SIGTERM, SIGKILL after `grace_s`. A cancelling
        run with no live process anywhere (it was never started) is cancelled directly."""
        with self.sessions() as s:
            rows = s.execute(select(RunRow.id, RunRow.pid).where(
                RunRow.status == "cancelling")).all()
            known = set(s.scalars(select(RunRow.id).where(RunRow.id.in_(list(self.children)))))
        ids = {r.id for r in rows}
        stop = [c for c in self.children.values() if c.run_id in ids or c.run_id not in known]
        orphans = [r.id for r in rows if r.id not in self.children and not _alive(r.pid)]
        self._terminate(stop)
        for child in stop:
            del self.children[child.run_id]
        with self.sessions.begin() as s:
            done = [c for c in stop if lifecycle.stopped(s, c.run_id)]
            for run_id in orphans:
                lifecycle.stopped(s, run_id)
        for child in done:
            self._close_trials(child)

    def _launch(self) -> None:
        with self.sessions() as s:
            queued = s.execute(
                select(RunRow.id, RunRow.kind, StudyRow.id, JobRow.id)
                .outerjoin(StudyRow, StudyRow.run_id == RunRow.id)
                .outerjoin(JobRow, JobRow.run_id == RunRow.id)
                .where(RunRow.status == "queued").order_by(RunRow.id)).all()
        if not queued:
            return
        if self.head.address is None:
            try:
                self.head.start()
                self.ray_status = f"connected ({self.head.address})"
            except Exception as exc:
                self.ray_status = f"error: {exc}"
                raise
        for run_id, kind, study_id, job_id in queued:
            with self.sessions.begin() as s:
                if not lifecycle.claim(s, run_id):
                    continue  # cancelled (or claimed elsewhere) since the query
            subject = study_id if kind == "search" else job_id
            try:
                if kind not in WORKERS or subject is None:
                    raise ValueError(f"run {run_id} ({kind}) has no study or job to run")
                child = self._spawn(run_id, kind, subject)
            except Exception as exc:  # e.g. the log folder is not writable
                log.exception("could not start run %d", run_id)
                with self.sessions.begin() as s:
                    lifecycle.crashed(s, run_id, f"could not start its process: {exc}")
                continue
            self.children[run_id] = child
            with self.sessions.begin() as s:
                lifecycle.started(s, run_id, child.proc.pid)

    # -- processes -------------------------------------------------------------------------
    def _spawn(self, run_id: int, kind: str, subject: int) -> Child:
        module, flag, _ = WORKERS[kind]
        cmd = [sys.executable, "-m", module, flag, str(subject), "--db", self.settings.db_url,
               "--ray-address", str(self.head.address),
               "--results-dir", self.settings.results_dir]
        if kind == "search" and self.settings.data_dir:
            cmd += ["--data-dir", self.settings.data_dir]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self._log_path(kind, subject).open("ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env=self.head.env, preexec_fn=die_with_parent(signal.SIGKILL))
        return Child(run_id, kind, subject, proc)

    def _terminate(self, children: list[Child]) -> None:
        """SIGTERM every process group, wait up to `grace_s` for all, SIGKILL the rest."""
        live = [c.proc for c in children if c.proc.poll() is None]
        for proc in live:
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait(10)

    def _close_trials(self, child: Child) -> None:
        """A stopped study leaves trials RUNNING in Optuna's tables: mark them FAIL."""
        if child.kind != "search":
            return
        with self.sessions() as s:
            name = s.scalar(select(StudyRow.name).where(StudyRow.id == child.subject))
        if name is None:
            return
        if self._storage is None:
            self._storage = open_storage(self.settings.db_url)
        for study in (name, baselines_study_name(name)):
            with contextlib.suppress(KeyError):
                close_stale_trials(self._storage, study)

    def _log_path(self, kind: str, subject: int) -> Path:
        return self.log_dir / f"{WORKERS[kind][2]}-{subject}.log"

    def _log_tail(self, child: Child, n: int = 4000) -> str:
        """The last `n` characters of the child's log, reading only its end (a long study's log
        can be large: Ray's output of every trial)."""
        try:
            with self._log_path(child.kind, child.subject).open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4 * n))  # UTF-8: at most 4 bytes a char
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return ""


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _alive(pid: int | None) -> bool:
    """Whether `pid` is a live process on this machine (another replica's run)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
