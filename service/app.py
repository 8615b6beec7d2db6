"""The REST control plane: `create_app(settings)` wires the state, middleware, error handlers
and routers together (issue 5). Reference: docs/api.md."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from service import dashboard
from service.api import errors, exports, jobs, studies, tools, trials
from service.api.limits import BodyLimit
from service.db import migrate
from service.runner import StudyRunner
from service.settings import Settings
from service.state import State
from workers.tune import open_storage


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = (settings or Settings.from_env()).resolved()
    state = State(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate(settings.db_url)
        state.storage = open_storage(settings.db_url)  # creates / upgrades Optuna's tables
        if settings.run_studies:
            state.runner = StudyRunner(settings, state.sessions)
            state.runner.start()
        try:
            yield
        finally:
            if state.runner is not None:
                state.runner.stop()
            state.engine.dispose()

    app = FastAPI(
        title="clnas",
        version=tools.VERSION,
        description="Architecture search over channel-local CNN blocks. See docs/api.md.",
        lifespan=lifespan,
    )
    app.state.clnas = state
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    errors.install(app)
    for module in (studies, trials, jobs, exports, tools):
        app.include_router(module.router)
    dashboard.mount(app)
    errors.document_errors(app)
    return app
