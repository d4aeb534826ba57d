"""devcloud's edge: the lock API's request rules (lablease.web.guard), answered as OpenStack answers.

Before any handler runs: a body is at most ``MAX_BODY`` bytes (oslo.middleware's default for Nova and
Cinder; a declared Content-Length over it is refused at once); a JSON body nests at most 32 levels,
measured before parsing; its text, the path and the query are valid Unicode without NUL (an unpaired
surrogate stored in a name broke every later listing of the project); a path holds no encoded slash.
A body that is not JSON is left to the handler, which answers it as its service does.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from lablease.devcloud.errors import CloudError, render, style_for_path
from lablease.web.guard import Refused, RequestGuard, check_depth, check_strings

MAX_BODY = 114_688  # oslo.middleware sizelimit: max_request_body_size


class Edge(RequestGuard):
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY):
        super().__init__(app, limit)

    def check_body(self, raw: bytes) -> None:
        check_depth(raw)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return  # not JSON: the handler answers "Malformed request body" in its service's words
        check_strings(data)

    async def refuse(self, exc: Refused, scope: Scope, receive: Receive, send: Send) -> None:
        too_large = exc.status == 413
        err = CloudError(exc.status, "Request is too large." if too_large else exc.message,
                         style_for_path(scope.get("path", "")), kind="overLimit" if too_large else None)
        await render(err)(scope, receive, send)
