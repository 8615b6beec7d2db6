"""What routes depend on, as `Annotated` aliases: the app's state, a database session per
request, the bearer-token check, and the path and query parameters every router shares."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db import TokenRow, hash_token
from service.state import State


def _state(request: Request) -> State:
    state: State = request.app.state.clnas
    return state


AppState = Annotated[State, Depends(_state)]


def _db(state: AppState) -> Iterator[Session]:
    with state.sessions() as s:
        yield s


DB = Annotated[Session, Depends(_db)]
bearer = HTTPBearer(auto_error=False)


def require_token(
    state: AppState,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    s: DB,
) -> None:
    """Every mutating endpoint: the configured token or one made by `clnas token create`."""
    token = state.settings.token
    has_db_tokens = s.scalar(select(func.count()).select_from(TokenRow)) or 0
    if not token and not has_db_tokens:
        return
    given = creds.credentials if creds is not None else ""
    if token and hmac.compare_digest(given.encode(), token.encode()):
        return
    if given and s.scalar(select(TokenRow).where(TokenRow.sha256 == hash_token(given))):
        return
    raise HTTPException(
        401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
    )


Auth = Depends(require_token)

Id = Annotated[int, Path(ge=1, le=2**31 - 1, description="study id")]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1, description="job id")]
Number = Annotated[int, Path(ge=0, le=2**31 - 1, description="trial number")]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]

ERROR_BODY = {"application/json": {"schema": {
    "type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"],
}}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "conflicts with the current state", "content": ERROR_BODY}
}
