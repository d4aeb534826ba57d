"""The dashboard's one action: an owner unlocks a node, through exactly the API's unlock.

Without JavaScript the node page's form asks for a confirmation page (a GET: nothing changes), whose
button posts the unlock; with it, the page confirms in a dialog and posts the fields as JSON, the
lock API's own body format. Either way the server decides, with the same call the
``POST /nodes/unlock_many/`` endpoint makes (``locking.unlock_many``: paddles' rule that
``locked_by`` must match, and for a cloud node its destroy first). The page's confirmation is a
courtesy, not the rule. The name the user gives is remembered in a cookie, so the browser fills it
in next time, with or without JavaScript.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from fastapi import Request
from pydantic import ValidationError

from lablease.lockapi import locking
from lablease.web.errors import describe_validation
from lablease.lockapi.schemas import UnlockMany

OWNER_COOKIE = "lablease_owner"
COOKIE_SECONDS = 365 * 24 * 3600


@dataclass(frozen=True)
class Outcome:
    """What an unlock from the page came to: the API's status and, when refused, its message."""

    status: int
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


async def read_fields(request: Request) -> dict[str, str]:
    """The unlock's fields: from the address (the confirmation page posts an empty body to a URL that
    carries them, which every body check in front of the app lets through), then from the body: a
    JSON object (what the page's script sends) or a urlencoded form (parsed here, no multipart needed)."""
    fields = dict(request.query_params)
    raw = await request.body()
    if not raw:
        return fields
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        return {**fields, **({str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {})}
    body = raw.decode("utf-8", errors="replace")
    return {**fields, **{k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}}


def same_origin(request: Request) -> bool:
    """Refuse a form posted from another site (a browser sends ``Origin`` with every form POST)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()


async def unlock(request: Request, name: str, owner: str) -> Outcome:
    """Unlock ``name`` as ``owner`` through the API's own path; the API's status and message."""
    try:
        body = UnlockMany(names=[name], locked_by=owner, description=None)
    except ValidationError as exc:
        return Outcome(400, describe_validation(list(exc.errors())).replace("names.0", "node name"))
    status, got = await locking.unlock_many(request.app.state.lock_context, body)
    if status == 200 and not got:
        return Outcome(404, "node not found")
    return Outcome(status, "" if status == 200 else str((got or {}).get("message", got)))
