"""Database fixtures for the API suite: every test runs against SQLite and against a real
PostgreSQL server started from the machine's binaries (initdb + pg_ctl; no docker)."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import psycopg
import pytest

from workers.study import StudySpec, parse_study
from workers.tune import (
    CURVE_ATTR,
    DefineByRun,
    open_storage,
    prepare_studies,
    rejected_values,
)

PG_BIN = Path(shutil.which("pg_ctl") or "/usr/lib/postgresql/15/bin/pg_ctl").resolve().parent


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: under root (CI containers) run it as `postgres`."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[tuple[str, int]]:
    """A throwaway PostgreSQL server from the machine's binaries (initdb + pg_ctl in a temp
    dir, the way pytest-postgresql does it, but also working when the tests run as root)."""
    base = Path(tempfile.mkdtemp(prefix="clnas-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    port = free_port()
    subprocess.run(_as_pg_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    subprocess.run(_as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l",
                                str(base / "log"), "-o",
                                f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
                                "start"]),
                   check=True, capture_output=True)
    try:
        yield "127.0.0.1", port
    finally:
        subprocess.run(_as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast",
                                    "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


DATABASES = ["sqlite", "postgresql"]


def new_database(request: pytest.FixtureRequest, kind: str, folder: Path) -> str:
    """The URL of an empty clnas database: a SQLite file in `folder`, or a fresh database on
    the session's PostgreSQL server."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'clnas.db'}"
    host, port = request.getfixturevalue("postgresql_server")
    name = f"t{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"host={host} port={port} user=postgres dbname=postgres",
                         autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@{host}:{port}/{name}"


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return new_database(request, request.param, tmp_path)


def seed_study(url: str, doc: dict[str, Any], n: int, seed: int = 0) -> StudySpec:
    """Fill the Optuna store for `doc` the way a run does: real sampling, real costs and
    budget verdicts; feasible candidates get a stand-in accuracy and a one-epoch curve."""
    spec = parse_study(doc)
    storage = open_storage(url)
    prepare_studies(storage, spec)
    study = optuna.load_study(study_name=spec.name, storage=storage,
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    define = DefineByRun(spec)
    for _ in range(n):
        trial = study.ask()
        config = define(trial)
        if config["rejected"]:
            study.tell(trial, rejected_values(spec, config["cost"]))
            continue
        acc = 0.2 + 0.05 * math.log(config["cost"]["madds"] / 1e6 + 1.0)
        trial.set_user_attr(CURVE_ATTR, [{"epoch": 1, "val_top1": acc, "synthetic": True}])
        study.tell(trial, [acc, config["cost"]["madds"]])
    return spec
