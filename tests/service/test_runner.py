"""The runner's one path for both kinds of run (docs/api.md#run-lifecycle): claims race safely,
a worker's own outcome stands, a process that died without one is `failed`, a cancelled run's
process is stopped (SIGTERM, then SIGKILL) and the run `cancelled` within one pass, and runs a
killed service left behind are requeued on start. Real processes, real database (SQLite and
PostgreSQL); no Ray (nothing here is queued when a pass starts)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import lifecycle
from service.db import JobRow, RunRow, StudyRow, make_engine, migrate, sessions
from service.runner import Child, StudyRunner
from service.settings import Settings


@pytest.fixture
def runner(db_url: str, tmp_path: Path) -> Iterator[StudyRunner]:
    migrate(db_url)
    engine = make_engine(db_url)
    r = StudyRunner(Settings(db_url=db_url, results_dir=str(tmp_path / "ray")), sessions(engine),
                    grace_s=1.0)
    yield r
    for child in r.children.values():
        child.proc.kill()
    engine.dispose()


def _study(r: StudyRunner, name: str, status: str = "queued") -> StudyRow:
    with r.sessions.begin() as s:
        row = StudyRow(name=name, run=RunRow(kind="search", status=status,
                                             spec={"format": "clnas.study/1", "name": name}))
        s.add(row)
    return row


def _status(r: StudyRunner, run_id: int) -> RunRow:
    with r.sessions() as s:
        run = s.get(RunRow, run_id)
        assert run is not None
        return run


def _child(r: StudyRunner, row: StudyRow, code: str) -> Child:
    """A stand-in worker process for a claimed run, logging where the real one would."""
    r.log_dir.mkdir(parents=True, exist_ok=True)
    with r._log_path("search", row.id).open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    child = Child(row.run_id, "search", row.id, proc)
    r.children[row.run_id] = child
    with r.sessions.begin() as s:
        assert lifecycle.started(s, row.run_id, proc.pid)
    return child


def test_a_run_is_claimed_once_even_when_raced(runner: StudyRunner) -> None:
    row = _study(runner, "raced")
    barrier, wins = threading.Barrier(6), []

    def claim() -> None:
        barrier.wait()
        with runner.sessions.begin() as s:
            wins.append(lifecycle.claim(s, row.run_id))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 5 + [True]
    run = _status(runner, row.run_id)
    assert run.status == "running" and run.attempts == 1 and run.started_at is not None
    with runner.sessions.begin() as s:
        assert not lifecycle.claim(s, 10_000)  # no such run


def test_cancel_of_a_queued_run_is_immediate(runner: StudyRunner) -> None:
    row = _study(runner, "cancelled-first")
    with runner.sessions.begin() as s:
        assert lifecycle.cancel(s, row.run_id) == "cancelled"
        assert not lifecycle.claim(s, row.run_id)  # the runner cannot start it afterwards
        assert lifecycle.cancel(s, row.run_id) is None  # nothing under way: a 409
    assert _status(runner, row.run_id).finished_at is not None


def test_the_workers_outcome_stands_and_a_crash_is_failed(runner: StudyRunner,
                                                          db_url: str) -> None:
    wrote, died, silent = (_study(runner, n) for n in ("wrote", "died", "silent"))
    for row in (wrote, died, silent):
        with runner.sessions.begin() as s:
            assert lifecycle.claim(s, row.run_id)
    finish = ("from service import lifecycle; from service.db import make_engine, sessions; "
              f"s = sessions(make_engine({db_url!r})).begin().__enter__(); "
              f"lifecycle.finish(s, {wrote.run_id}, 'completed'); s.commit()")
    procs = [_child(runner, wrote, finish).proc,
             _child(runner, died, "import sys; print('CUDA out of memory'); sys.exit(7)").proc,
             _child(runner, silent, "pass").proc]  # exits 0 without writing its outcome
    for proc in procs:
        proc.wait(60)
    runner._reap()
    assert runner.children == {}
    assert _status(runner, wrote.run_id).status == "completed"
    crashed = _status(runner, died.run_id)
    assert crashed.status == "failed" and "CUDA out of memory" in (crashed.error or "")
    assert crashed.pid is None and crashed.finished_at is not None
    quiet = _status(runner, silent.run_id)
    assert quiet.status == "failed" and quiet.error == "exit code 0"


def test_cancel_of_a_running_run_stops_it_in_one_pass(runner: StudyRunner) -> None:
    polite, stubborn, keep = (_study(runner, n) for n in ("polite", "stubborn", "keeps-running"))
    for row in (polite, stubborn, keep):
        with runner.sessions.begin() as s:
            assert lifecycle.claim(s, row.run_id)
    sleep = "import time; time.sleep(60)"
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    procs = {row.run_id: _child(runner, row, code).proc
             for row, code in ((polite, sleep), (stubborn, ignore), (keep, sleep))}
    time.sleep(0.5)  # let the stubborn one install its handler
    with runner.sessions.begin() as s:
        assert lifecycle.cancel(s, polite.run_id) == "cancelling"
        assert lifecycle.cancel(s, stubborn.run_id) == "cancelling"
        assert lifecycle.cancel(s, polite.run_id) == "cancelling"  # twice: still 202
        assert not lifecycle.finish(s, polite.run_id, "completed")  # the worker cannot undo it
    runner._stop_cancelled()  # one pass: SIGTERM, the grace period, SIGKILL for the stubborn
    assert procs[polite.run_id].poll() is not None and procs[stubborn.run_id].poll() is not None
    assert procs[keep.run_id].poll() is None and set(runner.children) == {keep.run_id}
    for row in (polite, stubborn):
        run = _status(runner, row.run_id)
        assert run.status == "cancelled" and run.pid is None and run.finished_at is not None
    assert _status(runner, keep.run_id).status == "running"


def test_a_cancelling_run_without_a_process_is_cancelled(runner: StudyRunner) -> None:
    """E.g. claimed by a service that was killed before it started the process."""
    row = _study(runner, "never-started", "cancelling")
    runner._stop_cancelled()
    assert _status(runner, row.run_id).status == "cancelled"


def test_restart_requeues_interrupted_runs(runner: StudyRunner) -> None:
    running, cancelling, done = (_study(runner, n, st) for n, st in (
        ("was-running", "running"), ("was-cancelling", "cancelling"), ("done", "completed")))
    with runner.sessions.begin() as s:
        job = JobRow(study_id=done.id, trial_number=0,
                     run=RunRow(kind="train", status="running", pid=123, attempts=1))
        s.add(job)
    runner.requeue_interrupted()
    assert _status(runner, running.run_id).status == "queued"
    assert _status(runner, cancelling.run_id).status == "cancelled"
    assert _status(runner, done.run_id).status == "completed"
    requeued = _status(runner, job.run_id)
    assert requeued.status == "queued" and requeued.pid is None
    with runner.sessions.begin() as s:
        assert lifecycle.claim(s, job.run_id)
    assert _status(runner, job.run_id).attempts == 2  # the restart is a second attempt


def test_service_stop_queues_its_runs_before_stopping_them(runner: StudyRunner) -> None:
    """What a worker writes while it is being stopped with the service no longer applies."""
    row = _study(runner, "stopped-with-the-service")
    with runner.sessions.begin() as s:
        assert lifecycle.claim(s, row.run_id)
    proc = _child(runner, row, "import time; time.sleep(60)").proc
    runner.stop()
    assert proc.poll() is not None and runner.children == {}
    with runner.sessions.begin() as s:
        assert not lifecycle.finish(s, row.run_id, "failed", "SIGTERM")  # too late
    assert _status(runner, row.run_id).status == "queued"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_crash_reports_the_end_of_a_long_log(runner: StudyRunner) -> None:
    """The error of a crashed run is its log's last 4000 characters, read from the end of the
    file (a study's log holds every trial's output), multi-byte text included."""
    row = _study(runner, "long-log")
    runner.log_dir.mkdir(parents=True, exist_ok=True)
    text = "ε trial output\n" * 100_000 + "Traceback ... RuntimeError: Δ boom\n"
    runner._log_path("search", row.id).write_text(text)
    child = Child(row.run_id, "search", row.id, subprocess.Popen([sys.executable, "-c", ""]))
    assert runner._log_tail(child) == text[-4000:]
    assert runner._log_tail(child, n=5) == "boom\n"
    runner._log_path("search", row.id).write_text("short")
    assert runner._log_tail(child) == "short"
    runner._log_path("search", row.id).unlink()
    assert runner._log_tail(child) == ""
    child.proc.wait()
