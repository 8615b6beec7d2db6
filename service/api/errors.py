"""One place turns every error into an HTTP answer with a machine-readable body
(`{"detail": ...}`), and puts the statuses every operation can answer into `/openapi.json`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from search_space import ArchError
from service import promotion
from service.api.deps import ERROR_BODY
from service.errors import Busy, Conflict, NotFound


def _error_loc(path: str) -> list[str | int]:
    """`stages[3].g1` -> ["stages", 3, "g1"]."""
    out: list[str | int] = []
    for part in path.replace("]", "").split("."):
        name, *idx = part.split("[")
        if name and name != "<root>":
            out.append(name)
        out += [int(i) for i in idx if i.isdigit()]
    return out


def arch_error_422(exc: ArchError, prefix: list[str | int]) -> HTTPException:
    """A format error as a 422 whose `loc`s name each offending value under `prefix`."""
    detail = [
        {"loc": [*prefix, *_error_loc(p)], "msg": m, "type": "value_error"}
        for p, m in exc.problems
    ]
    return HTTPException(422, detail=detail)


def install(app: FastAPI) -> None:
    @app.exception_handler(ArchError)
    async def _arch_error(_: Request, exc: ArchError) -> JSONResponse:
        e = arch_error_422(exc, ["body"])
        return JSONResponse({"detail": e.detail}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(Busy)
    async def _busy(_: Request, exc: Busy) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and request.method in ("POST", "PUT", "PATCH"):
            # FastAPI answers 400 for a body it cannot decode at all (bytes that are not
            # UTF-8, nesting too deep); like every other invalid input it is a 422 naming the
            # field.
            detail = [{"loc": ["body"], "type": "json_invalid",
                       "msg": "the request body is not UTF-8 JSON, or nests too deeply"}]
            return JSONResponse({"detail": detail}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": list(e.get("loc", [])), "msg": str(e.get("msg", "")),
             "type": str(e.get("type", "value_error"))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(promotion.FieldError)
    async def _field_error(_: Request, exc: promotion.FieldError) -> JSONResponse:
        detail = [{"loc": exc.loc, "msg": exc.msg, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)


def document_errors(app: FastAPI) -> None:
    """Put the error statuses every operation can answer into `/openapi.json`, so the schema
    tells the whole truth (schemathesis checks it): 401 where a bearer token is required, 404
    where a path names an id, 409 where a route declares `responses=CONFLICT`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            for path, methods in schema.get("paths", {}).items():
                for op in methods.values():
                    responses = op.setdefault("responses", {})
                    if op.get("security"):
                        responses.setdefault("401", {
                            "description": "missing or invalid bearer token",
                            "content": ERROR_BODY})
                    if "{" in path:
                        responses.setdefault("404", {"description": "unknown id",
                                                     "content": ERROR_BODY})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
