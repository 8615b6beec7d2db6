"""The run lifecycle (docs/api.md#run-lifecycle): every status change of a run is one
conditional UPDATE here, so two writers racing for a run (the runner claiming it while a user
cancels it, a worker finishing while it is being cancelled) cannot both win.

    queued --claim--> running --finish--> completed | failed        (the worker)
    running --crashed--> failed                                      (the runner)
    running --requeue--> queued                    (the runner, as the service stops or starts)
    queued --cancel--> cancelled;  running --cancel--> cancelling    (the API)
    cancelling --stopped--> cancelled                                (the runner)
    completed | failed | cancelled --resume--> queued                (the API)

Each function runs in the caller's session and returns whether it changed the row; the
caller commits. Nothing here knows of HTTP or of processes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, func, update
from sqlalchemy.orm import Session

from service.db import RunRow, utcnow

TERMINAL = ("completed", "failed", "cancelled")


def _move(s: Session, run_id: int, src: tuple[str, ...], **values: Any) -> bool:
    """`UPDATE clnas_runs SET ... WHERE id = run_id AND status IN src`: True if it matched."""
    done = s.execute(
        update(RunRow).where(RunRow.id == run_id, RunRow.status.in_(src)).values(**values)
        .execution_options(synchronize_session=False)
    )
    return isinstance(done, CursorResult) and done.rowcount == 1


def claim(s: Session, run_id: int) -> bool:
    """queued -> running, before its process starts (the runner): a cancel or delete that got
    in first wins, and a run is never started twice."""
    return _move(s, run_id, ("queued",), status="running", finished_at=None, error=None,
                 pid=None, attempts=func.coalesce(RunRow.attempts, 0) + 1,
                 started_at=func.coalesce(RunRow.started_at, utcnow()))


def started(s: Session, run_id: int, pid: int) -> bool:
    """Record the process of a claimed run; False if it was withdrawn meanwhile."""
    return _move(s, run_id, ("running", "cancelling"), pid=pid)


def finish(s: Session, run_id: int, status: str, error: str | None = None,
           progress: dict[str, Any] | None = None) -> bool:
    """running -> completed | failed, written by the worker itself as it ends. A run being
    cancelled stays so: the runner is stopping it."""
    if status not in ("completed", "failed"):
        raise ValueError(f"status: a worker finishes a run as completed or failed, not {status!r}")
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow(),
                              "pid": None}
    if progress is not None:
        values["progress"] = progress
    return _move(s, run_id, ("running",), **values)


def crashed(s: Session, run_id: int, error: str) -> bool:
    """running -> failed for a process that ended without writing its outcome (the runner)."""
    return _move(s, run_id, ("running",), status="failed", error=error, finished_at=utcnow(),
                 pid=None)


def cancel(s: Session, run_id: int) -> str | None:
    """The user's cancel: a queued run is cancelled at once; a running one becomes `cancelling`
    and the runner stops its process on its next pass. Returns the new status, or None if the
    run is not under way (a second cancel of a `cancelling` run answers `cancelling` again)."""
    if _move(s, run_id, ("queued",), status="cancelled", finished_at=utcnow(), pid=None):
        return "cancelled"
    if _move(s, run_id, ("running", "cancelling"), status="cancelling"):
        return "cancelling"
    return None


def stopped(s: Session, run_id: int) -> bool:
    """cancelling -> cancelled, once the runner has ended the process (or found none)."""
    return _move(s, run_id, ("cancelling",), status="cancelled", finished_at=utcnow(),
                 pid=None)


def resume(s: Session, run_id: int) -> bool:
    """completed | failed | cancelled -> queued: the run continues where it stopped."""
    return _move(s, run_id, TERMINAL, status="queued", error=None, finished_at=None)


def requeue(s: Session, run_ids: list[int]) -> None:
    """running -> queued for the runs of a service that is stopping, before their processes
    are: whatever a worker writes on its way down no longer matches, and the next start
    resumes them."""
    s.execute(update(RunRow).where(RunRow.id.in_(run_ids), RunRow.status == "running")
              .values(status="queued", pid=None).execution_options(synchronize_session=False))


def requeue_interrupted(s: Session) -> list[int]:
    """On the runner's start: runs left `running` by a stopped or killed service are queued
    again (they resume where they were); runs left `cancelling` have no process any more and
    are cancelled. Returns the ids requeued."""
    ids = list(s.scalars(update(RunRow).where(RunRow.status == "running")
                         .values(status="queued", pid=None).returning(RunRow.id)
                         .execution_options(synchronize_session=False)))
    s.execute(update(RunRow).where(RunRow.status == "cancelling")
              .values(status="cancelled", finished_at=utcnow(), pid=None)
              .execution_options(synchronize_session=False))
    return ids


def write_progress(s: Session, run_id: int, progress: dict[str, Any]) -> bool:
    """A running worker's progress; nothing once the run is being cancelled or has ended."""
    return _move(s, run_id, ("running",), progress=progress)
