"""The node page's extend form: an owner moves a cloud lock's expiry later, through the API's own rule.

``POST /ui/nodes/<name>/extend`` (fields ``locked_by``, ``hours``) calls what ``POST /lab/nodes/<name>/extend/``
calls (lab.policy.LabPolicy.extend: the owner must be the lock's, at most ``lock_hours_max``); a refusal shows
the API's message on the node page. Like the unlock form, it takes only posts from the dashboard's own page.
"""

from __future__ import annotations

from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lablease.dashboard import actions
from lablease.dashboard.routes import NO_OWNER, _node_response, base
from lablease.store import StoreError

router = APIRouter(include_in_schema=False)


def _hours(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value <= 24 * 366 else None


@router.post("/ui/nodes/{name}/extend", response_class=HTMLResponse)
async def extend(request: Request, name: str) -> Response:
    """Extend ``name``'s lock by ``hours`` as ``locked_by``; back to the node page with the outcome."""
    if not actions.same_origin(request):
        return HTMLResponse("this form must be sent from the dashboard's own page", status_code=403)
    fields = await actions.read_fields(request)
    owner, hours = fields.get("locked_by", "").strip(), _hours(fields.get("hours", "").strip())
    lab = request.app.state.lab
    error, status = "", 200
    if not owner:
        error, status = NO_OWNER, 400
    elif hours is None:
        error, status = "Give the hours to extend by: a number above 0 (0.5 is 30 minutes).", 400
    elif lab is None:
        error, status = "This server provisions no cloud nodes, so no lock expires.", 400
    else:
        try:
            await anyio.to_thread.run_sync(lambda: lab.policy.extend(name, owner, hours))
        except StoreError as exc:
            error, status = exc.message, exc.status
    if not error:
        response: Response = RedirectResponse(f"{base(request)}/nodes/{quote(name, safe='')}?done=extended",
                                              status_code=303)
    else:
        response = await anyio.to_thread.run_sync(
            lambda: _node_response(request, name, status, error=error, typed_owner=owner))
    response.set_cookie(actions.OWNER_COOKIE, owner, max_age=actions.COOKIE_SECONDS, path=base(request) + "/",
                        samesite="lax", httponly=True)
    return response
