"""Service settings: from the environment (`CLNAS_*`) with CLI flags on top (issue 5)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workers.tune import absolute_db_url

DEFAULT_DB = "sqlite:///clnas.db"


@dataclass(frozen=True)
class Settings:
    db_url: str = DEFAULT_DB
    ray_address: str | None = None  # None: the service starts (and owns) a local Ray head
    data_dir: str | None = None  # default data dir for studies that do not name one
    token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    results_dir: str = "ray_results"
    ray_num_cpus: int | None = None  # local head only; None: all cores
    run_studies: bool = True  # False: API only (tests of the API, read-only replicas)
    max_body_bytes: int = 1 << 20  # larger request bodies get 413 (docs/limits.md#requests)
    max_analyses: int = 2  # cost analyses at once (docs/limits.md#requests)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        env = os.environ
        s = cls(
            db_url=env.get("CLNAS_DB", DEFAULT_DB),
            ray_address=env.get("CLNAS_RAY_ADDRESS") or None,
            data_dir=env.get("CLNAS_DATA_DIR") or None,
            token=env.get("CLNAS_TOKEN") or None,
            host=env.get("CLNAS_HOST", "127.0.0.1"),
            port=int(env.get("CLNAS_PORT", "8000")),
            results_dir=env.get("CLNAS_RESULTS_DIR", "ray_results"),
        )
        return replace(s, **{k: v for k, v in overrides.items() if v is not None})

    def resolved(self) -> Settings:
        return replace(
            self,
            db_url=absolute_db_url(self.db_url),
            results_dir=str(Path(self.results_dir).resolve()),
            data_dir=str(Path(self.data_dir).resolve()) if self.data_dir else None,
        )

    def check_bind(self) -> None:
        """Refuse a non-loopback bind address without a token (anyone could submit jobs)."""
        if self.token or is_loopback(self.host):
            return
        raise ValueError(
            f"refusing to listen on {self.host} without a token: set --token or $CLNAS_TOKEN "
            "(or bind 127.0.0.1)"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
