"""A pure ASGI body-size limit: refuses large bodies with 413 ``{"message": ...}``."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_message(limit: int) -> str:
    return f"request body too large: the limit is {limit} bytes"


class BodySizeLimit:
    """Refuse a declared Content-Length over ``limit`` at once; stop a streamed body at ``limit``."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                body = json.dumps({"message": too_large_message(self.limit)}).encode()
                await send({"type": "http.response.start", "status": 413, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    # Raised inside the app's body read, so the app's handler answers 413 JSON.
                    raise HTTPException(413, too_large_message(self.limit))
            return msg

        await self.app(scope, limited_receive, send)
