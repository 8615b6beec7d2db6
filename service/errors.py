"""The service's own exceptions: what a request cannot do, whatever the transport
(`service/api/errors.py` turns them into HTTP answers with a machine-readable body)."""

from __future__ import annotations


class NotFound(LookupError):
    """No study, trial or job with that id."""


class Conflict(RuntimeError):
    """The operation does not fit the current state (a running study deleted, an untrained trial
    exported, a name taken)."""


class Busy(RuntimeError):
    """Too much of a bounded kind of work is under way; retry shortly."""
