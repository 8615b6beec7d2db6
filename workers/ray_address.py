"""Which Ray cluster a clnas driver joins."""

from __future__ import annotations

import os

ADDRESS_HELP = ("join a Ray cluster: HOST:PORT, or 'auto' for the one `ray start` runs on this "
                "machine [default: $RAY_ADDRESS, else a private local Ray]")


def ray_address(address: str | None) -> str:
    """The `ray.init` address for `address` (None: not given). Unlike `ray.init()`'s own default,
    an unset address never joins whatever cluster happens to run on this machine (for example
    the head a running `clnas serve` owns, which only its own study processes can join): it is
    `$RAY_ADDRESS` if set, else "local", a private Ray instance for this driver."""
    return address or os.environ.get("RAY_ADDRESS") or "local"
