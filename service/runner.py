"""Studies and promoted full trainings run outside the request path (issues 5 and 7).

- One Ray cluster for the whole service: `--ray-address` joins an existing one; otherwise the
  service starts a local head (`ray start --head --block`) that dies with the service.
- Each study runs in its own process (`python -m service.worker`), a Ray driver on that cluster,
  so several studies share Ray's resources and a crashing study cannot take the API down.
- Each promoted trial's full training runs the same way (`python -m service.train_worker`),
  a Ray Train driver on that cluster.
- A supervisor thread starts queued studies and train jobs, watches their processes and records
  the outcome. On start, studies and jobs left `running` by a killed service are queued again:
  `run_study` resumes a study from the Optuna storage without losing a completed trial, and a
  train job resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import sessionmaker

from service.db import JobRow, StudyRow, utcnow
from service.settings import Settings

log = logging.getLogger("clnas.service")
PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int) -> Any:
    """preexec_fn: the child gets `sig` when the service dies, even by SIGKILL (Linux)."""

    def fn() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)

    return fn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RayHead:
    """The local Ray head the service owns (when no `--ray-address` is given)."""

    def __init__(self, settings: Settings, log_dir: Path):
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = settings.ray_address
        self.log_dir = log_dir
        # Ray 2.60 clusters authenticate drivers with a token: the head the service starts and
        # the study processes share one (an external cluster's token comes from the user's
        # environment, $RAY_AUTH_TOKEN or ~/.ray/auth_token).
        self.env = dict(os.environ)
        if not settings.ray_address and not self.env.get("RAY_AUTH_TOKEN"):
            self.env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

    def start(self, timeout: float = 120) -> str:
        if self.address:
            return self.address
        port = _free_port()
        ray_bin = str(Path(sys.executable).with_name("ray"))
        cmd = [ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false",
               "--disable-usage-stats", "--block"]
        if self.settings.ray_num_cpus:
            cmd.append(f"--num-cpus={self.settings.ray_num_cpus}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = (self.log_dir / "ray-head.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                     preexec_fn=_die_with_parent(signal.SIGTERM))
        address = f"127.0.0.1:{port}"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start failed; see {self.log_dir / 'ray-head.log'}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                self.address = address
                time.sleep(2)  # the raylet registers just after the GCS opens its port
                return address
            time.sleep(0.5)
        raise RuntimeError(f"Ray head not up after {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


class StudyRunner:
    """Starts queued studies and train jobs as processes, records how they end, cancels them
    on request."""

    def __init__(self, settings: Settings, session_factory: sessionmaker[Any], poll_s: float = 1.0):
        self.settings = settings
        self.sessions = session_factory
        self.poll_s = poll_s
        self.log_dir = Path(settings.results_dir) / "logs"
        self.head = RayHead(settings, self.log_dir)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}  # study id -> its process
        self.jobs: dict[int, subprocess.Popen[bytes]] = {}  # train job id -> its process
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.ray_status = "not started"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.requeue_interrupted()
        self.thread = threading.Thread(target=self._loop, name="clnas-runner", daemon=True)
        self.thread.start()

    def requeue_interrupted(self) -> None:
        """Studies and train jobs a stopped or killed service left `running` (without a
        process) are queued again; they resume where they were."""
        with self.sessions.begin() as s:
            for row in s.scalars(select(StudyRow).where(StudyRow.status == "running")):
                row.status = "queued"
            for job in s.scalars(select(JobRow).where(JobRow.status == "running")):
                job.status, job.pid = "queued", None

    def stop(self) -> None:
        """Service shutdown: study and train processes stop; their rows stay `running` in the
        database and resume on the next start."""
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(30)
        with self.lock:
            for proc in [*self.procs.values(), *self.jobs.values()]:
                self._terminate(proc)
            self.procs.clear()
            self.jobs.clear()
        self.head.stop()

    # -- control ---------------------------------------------------------------------------
    def cancel(self, study_id: int) -> None:
        with self.lock:
            proc = self.procs.pop(study_id, None)
        if proc is not None:
            self._terminate(proc)

    def cancel_job(self, job_id: int) -> None:
        with self.lock:
            proc = self.jobs.pop(job_id, None)
        if proc is not None:
            self._terminate(proc)

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self._reap()
                self._launch()
            except Exception:  # keep supervising; the next tick retries
                log.exception("study supervisor tick failed")
            self.stop_event.wait(self.poll_s)

    def _reap(self) -> None:
        with self.lock:
            ended = {sid: p for sid, p in self.procs.items() if p.poll() is not None}
            for sid in ended:
                del self.procs[sid]
        for sid, proc in ended.items():
            with self.sessions.begin() as s:
                row = s.get(StudyRow, sid)
                if row is None or row.status != "running":
                    continue  # cancelled or deleted meanwhile
                row.finished_at = utcnow()
                if proc.returncode == 0:
                    row.status, row.error = "completed", None
                else:
                    row.status = "failed"
                    row.error = self._log_tail(sid) or f"exit code {proc.returncode}"
        with self.lock:
            ended = {jid: p for jid, p in self.jobs.items() if p.poll() is not None}
            for jid in ended:
                del self.jobs[jid]
        for jid, proc in ended.items():
            with self.sessions.begin() as s:
                job = s.get(JobRow, jid)
                if job is None or job.status != "running":
                    continue  # completed (the worker records that), cancelled or deleted
                job.finished_at, job.pid, job.status = utcnow(), None, "failed"
                tail = self._log_tail(jid, kind="train")
                job.error = tail or f"exit code {proc.returncode}"

    def _launch(self) -> None:
        with self.sessions() as s:
            queued = list(s.scalars(select(StudyRow.id).where(StudyRow.status == "queued")
                                    .order_by(StudyRow.id)))
            jobs = list(s.scalars(select(JobRow.id).where(JobRow.status == "queued",
                                                          JobRow.kind == "train")
                                  .order_by(JobRow.id)))
        if queued or jobs:
            if self.head.address is None:
                try:
                    self.head.start()
                    self.ray_status = f"connected ({self.head.address})"
                except Exception as exc:
                    self.ray_status = f"error: {exc}"
                    raise
            for sid in queued:
                if self._claim(StudyRow, sid):
                    self._start(StudyRow, sid, self._spawn)
            for jid in jobs:
                if self._claim(JobRow, jid):
                    self._start(JobRow, jid, self._spawn_job)
        self._stop_withdrawn()

    def _claim(self, model: type[StudyRow] | type[JobRow], id_: int) -> bool:
        """queued -> running in one conditional UPDATE, committed before the process starts:
        a cancel or delete that got in first wins, and a row is never started twice."""
        values: dict[str, Any] = {"status": "running", "finished_at": None, "error": None,
                                  "started_at": func.coalesce(model.started_at, utcnow())}
        if model is StudyRow:
            values["runs"] = func.coalesce(StudyRow.runs, 0) + 1
        with self.sessions.begin() as s:
            done = s.execute(
                update(model).where(model.id == id_, model.status == "queued").values(**values)
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(done, "rowcount", 0) == 1)

    def _start(self, model: type[StudyRow] | type[JobRow], id_: int,
               spawn: Callable[[int], int]) -> None:
        try:
            pid: int | None = spawn(id_)
            error = None
        except Exception as exc:  # e.g. the log folder is not writable
            log.exception("could not start %s %d", model.__tablename__, id_)
            pid, error = None, f"could not start its process: {exc}"
        with self.sessions.begin() as s:
            row = s.get(model, id_)
            if row is None or row.status != "running":
                return  # withdrawn meanwhile: _stop_withdrawn ends the process
            if error is not None:
                row.status, row.error, row.finished_at = "failed", error, utcnow()
            elif isinstance(row, JobRow):
                row.pid = pid

    def _stop_withdrawn(self) -> None:
        """End processes whose row was cancelled or deleted while they were being started."""
        with self.lock:
            studies, jobs = list(self.procs), list(self.jobs)
        if not studies and not jobs:
            return
        with self.sessions() as s:
            gone = set(studies) - set(s.scalars(select(StudyRow.id).where(
                StudyRow.id.in_(studies), StudyRow.status != "cancelled")))
            gone_jobs = set(jobs) - set(s.scalars(select(JobRow.id).where(
                JobRow.id.in_(jobs), JobRow.status != "cancelled")))
        for sid in gone:
            self.cancel(sid)
        for jid in gone_jobs:
            self.cancel_job(jid)

    def _log_path(self, id_: int, kind: str = "study") -> Path:
        return self.log_dir / f"{kind}-{id_}.log"

    def _log_tail(self, id_: int, n: int = 4000, kind: str = "study") -> str:
        try:
            text = self._log_path(id_, kind).read_text(errors="replace")
        except OSError:
            return ""
        return text[-n:]

    def _spawn(self, study_id: int) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "service.worker", "--study-id", str(study_id),
               "--db", self.settings.db_url, "--ray-address", str(self.head.address),
               "--results-dir", self.settings.results_dir]
        if self.settings.data_dir:
            cmd += ["--data-dir", self.settings.data_dir]
        out = self._log_path(study_id).open("ab")
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=self.head.env,
            preexec_fn=_die_with_parent(signal.SIGKILL),
        )
        with self.lock:
            self.procs[study_id] = proc
        return proc.pid

    def _spawn_job(self, job_id: int) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "service.train_worker", "--job-id", str(job_id),
               "--db", self.settings.db_url, "--ray-address", str(self.head.address),
               "--results-dir", self.settings.results_dir]
        out = self._log_path(job_id, "train").open("ab")
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=self.head.env,
            preexec_fn=_die_with_parent(signal.SIGKILL),
        )
        with self.lock:
            self.jobs[job_id] = proc
        return proc.pid
