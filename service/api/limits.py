"""The body size limit in front of every route (docs/limits.md#requests); the documents
themselves are bounded by `search_space.arch` (docs/limits.md#architecture-documents) and the
concurrent analyses by `service.state.AnalysisSlots`."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Answer 413 to a request body over `max_bytes`, before the route reads any of it.

    A declared `Content-Length` is judged from the header alone; a chunked body is read (and
    kept, at most `max_bytes`) until it ends or passes the limit, then handed on whole."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._too_large(send)
                return
            await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._too_large(send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        detail = [{"loc": ["body"], "type": "body_too_large",
                   "msg": f"the request body is over the limit of {self.max_bytes} bytes"}]
        payload = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": payload})
