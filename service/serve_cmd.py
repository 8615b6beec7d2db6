"""`clnas serve` (the service and its dashboard) and `clnas token create` (issue 5)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

console = Console()


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the REST service and dashboard (SQLite file + local Ray by default)",
        description="Serve the REST API (/api, /docs) and the dashboard (/). Studies submitted "
        "over HTTP run on Ray; interrupted studies resume when the service starts again.",
    )
    p.add_argument("--host", default=None, help="bind address [127.0.0.1; $CLNAS_HOST]")
    p.add_argument("--port", type=int, default=None, help="port [8000; $CLNAS_PORT]")
    p.add_argument("--db", default=None,
                   help="SQLAlchemy URL [sqlite:///clnas.db; $CLNAS_DB], e.g. "
                   "postgresql+psycopg://user:pw@host/db")
    p.add_argument("--ray-address", default=None,
                   help="join this Ray cluster [$CLNAS_RAY_ADDRESS; default: start a local head]")
    p.add_argument("--data-dir", default=None, help="datasets folder [$CLNAS_DATA_DIR]")
    p.add_argument("--results-dir", default=None, help="Ray results and logs [ray_results]")
    p.add_argument("--token", default=None,
                   help="bearer token for mutating endpoints [$CLNAS_TOKEN]; required to bind "
                   "a non-loopback address")
    p.add_argument("--ray-num-cpus", type=int, default=None, help="CPUs of the local Ray head")
    p.set_defaults(func=cmd_serve)

    tok = sub.add_parser("token", help="manage API tokens stored in the database")
    tsub = tok.add_subparsers(dest="token_command", required=True)
    create = tsub.add_parser("create", help="create a token; prints it once")
    create.add_argument("name")
    create.add_argument("--db", default=None, help="SQLAlchemy URL [sqlite:///clnas.db]")
    create.set_defaults(func=cmd_token_create)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    settings = Settings.from_env(
        host=args.host, port=args.port, db_url=args.db, ray_address=args.ray_address,
        data_dir=args.data_dir, results_dir=args.results_dir, token=args.token,
        ray_num_cpus=args.ray_num_cpus,
    ).resolved()
    settings.check_bind()
    url = f"http://{settings.host}:{settings.port}"
    console.print(f"[bold]clnas {_version()}[/] dashboard {url}/   API docs {url}/docs")
    console.print(f"database {settings.db_url}   ray {settings.ray_address or 'local head'}   "
                  f"token {'required' if settings.token else 'off (loopback only)'}")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import IntegrityError

    from service.db import TokenRow, hash_token, make_engine, migrate, new_token, sessions
    from service.settings import Settings

    url = Settings.from_env(db_url=args.db).resolved().db_url
    migrate(url)
    token = new_token()
    try:
        with sessions(make_engine(url)).begin() as s:
            s.add(TokenRow(name=args.name, sha256=hash_token(token)))
    except IntegrityError:
        raise ValueError(f"a token named {args.name!r} already exists") from None
    print(token)
    return 0


def _version() -> str:
    from importlib import metadata

    return metadata.version("clnas")
