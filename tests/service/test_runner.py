"""The runner's start-up of queued rows: a row is claimed (queued -> running) in one
conditional UPDATE before its process starts, so a cancel or delete that got in first wins and
no row is started twice; a process whose row was cancelled or deleted while it was being
started is ended on the next tick. Real processes, real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.db import JobRow, StudyRow, make_engine, migrate, sessions
from service.runner import StudyRunner
from service.settings import Settings


@pytest.fixture
def runner(db_url: str, tmp_path: Path) -> Iterator[StudyRunner]:
    migrate(db_url)
    engine = make_engine(db_url)
    r = StudyRunner(Settings(db_url=db_url, results_dir=str(tmp_path / "ray")), sessions(engine))
    yield r
    for proc in [*r.procs.values(), *r.jobs.values()]:
        proc.kill()
    engine.dispose()


def _add(r: StudyRunner, row: StudyRow | JobRow) -> int:
    with r.sessions.begin() as s:
        s.add(row)
        s.flush()
        return row.id


def _study(name: str, status: str = "queued") -> StudyRow:
    return StudyRow(name=name, spec={"format": "clnas.study/1", "name": name}, status=status)


def test_a_row_is_claimed_once_and_not_after_a_cancel(runner: StudyRunner) -> None:
    sid = _add(runner, _study("claim-me"))
    assert runner._claim(StudyRow, sid)
    assert not runner._claim(StudyRow, sid)  # already running: a second tick cannot start it
    with runner.sessions() as s:
        row = s.get(StudyRow, sid)
        assert row is not None and row.status == "running" and row.runs == 1
        assert row.started_at is not None
    cancelled = _add(runner, _study("cancelled-first", "cancelled"))
    assert not runner._claim(StudyRow, cancelled)
    assert not runner._claim(StudyRow, 10_000)  # deleted
    jid = _add(runner, JobRow(study_id=sid, kind="train", status="queued", trial_number=0))
    assert runner._claim(JobRow, jid) and not runner._claim(JobRow, jid)


def test_processes_of_withdrawn_rows_are_ended(runner: StudyRunner) -> None:
    keep = _add(runner, _study("keeps-running"))
    withdrawn = _add(runner, _study("cancelled-while-starting"))
    deleted = _add(runner, _study("deleted-while-starting"))
    for sid in (keep, withdrawn, deleted):
        assert runner._claim(StudyRow, sid)
        runner.procs[sid] = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                             start_new_session=True)
    with runner.sessions.begin() as s:
        row = s.get(StudyRow, withdrawn)
        assert row is not None
        row.status = "cancelled"  # what POST /cancel does, before the runner knew the process
        gone = s.get(StudyRow, deleted)
        s.delete(gone)
    procs = dict(runner.procs)
    runner._stop_withdrawn()
    assert set(runner.procs) == {keep}
    time.sleep(0.2)
    assert procs[withdrawn].poll() is not None and procs[deleted].poll() is not None
    assert procs[keep].poll() is None
    with runner.sessions() as s:
        row = s.get(StudyRow, withdrawn)
        assert row is not None and row.status == "cancelled"  # the runner did not overwrite it
