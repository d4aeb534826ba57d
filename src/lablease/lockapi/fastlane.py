"""The two hot endpoints (lock_many, unlock_many) served straight from ASGI.

Same validation models, same store calls and the same answers as the FastAPI routes (which stay
for the OpenAPI schema and for apps built with ``fast_paths=False``), minus the framework's
per-request layers, which cost more CPU than the database work. On PostgreSQL the request is
settled inside the event loop by one statement on an async connection (``AsyncLockLane``); only
what that statement cannot settle (too few free nodes, a node not held by the caller, a database
error) goes to ``NodeStore`` in a thread. ``lablease serve`` puts this layer outermost, in front
of FastAPI's own middleware; ``create_app`` also installs it inside the app (tests, embedding).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from lablease.lockapi import locking
from lablease.web.errors import describe_validation
from lablease.lockapi.locking import LockContext
from lablease.web.guard import Refused, answer, checked_body, parse_json
from lablease.lockapi.schemas import LockMany, UnlockMany

log = logging.getLogger(__name__)
Answer = tuple[int, Any]


class HotPaths:
    """Serve ``POST /nodes/lock_many/`` and ``POST /nodes/unlock_many/``; pass the rest on.

    ``state``: when this layer is the served app (``create_served_app``), the FastAPI app's ``state``,
    which ``lablease serve`` reaches through it (its shutdown drains the lab).
    """

    def __init__(self, app: ASGIApp, ctx: LockContext, limit: int, state: Any = None):
        self.app = app
        self.limit = limit
        self.ctx = ctx
        self.state = state
        self.routes: dict[str, Callable[[bytes, asyncio.Event], Awaitable[Answer]]] = {}
        for path, handler in (("/nodes/lock_many", self._lock_many), ("/nodes/unlock_many", self._unlock_many)):
            self.routes[path] = self.routes[path + "/"] = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:  # the edge rules of middleware.RequestGuard, before the body is read or parsed
            raw = await checked_body(scope, receive, self.limit)
        except Refused as exc:
            await answer(send, exc.status, {"message": exc.message})
            return
        if raw is None:
            return
        # A client that goes away while its nodes are provisioned must not leave them locked for nobody.
        abandoned = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, abandoned))
        try:
            status, body = await handler(raw, abandoned)
        except Exception:  # the FastAPI app's catch-all does not wrap this lane
            log.exception("unhandled error path=%s", scope.get("path"))
            status, body = 500, {"message": "internal error; see the server log"}
        finally:
            watcher.cancel()
        if not abandoned.is_set():
            await answer(send, status, body)

    @staticmethod
    def _validated(model, raw: bytes):  # noqa: ANN001, ANN205
        try:
            data = parse_json(raw) if raw else None
        except Refused as exc:
            return None, (exc.status, {"message": exc.message})
        try:
            return model.model_validate(data), None
        except ValidationError as exc:
            return None, (400, {"message": describe_validation(exc.errors())})

    async def _lock_many(self, raw: bytes, abandoned: asyncio.Event | None = None) -> Answer:
        body, error = self._validated(LockMany, raw)
        return error or await locking.lock_many(self.ctx, body, abandoned)

    async def _unlock_many(self, raw: bytes, abandoned: asyncio.Event | None = None) -> Answer:
        body, error = self._validated(UnlockMany, raw)
        return error or await locking.unlock_many(self.ctx, body)


async def _watch_disconnect(receive: Receive, abandoned: asyncio.Event) -> None:
    """Set ``abandoned`` when the client disconnects (the body has been read, so nothing else arrives)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            abandoned.set()
            return
