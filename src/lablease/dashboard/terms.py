"""The node page's extend form: an owner moves a cloud lock's expiry later, through the API's own rule.

As the unlock form (dashboard.actions): without JavaScript the form asks for a confirmation page (a GET:
nothing changes), whose button posts an empty body to an address carrying the fields; with it, the page
confirms in a dialog and posts the fields as JSON. ``POST /ui/nodes/<name>/extend`` (``locked_by``,
``hours``, ``confirm=yes``) calls what ``POST /lab/nodes/<name>/extend/`` calls (lab.policy.LabPolicy.extend:
the owner must be the lock's, at most ``lock_hours_max``); a refusal shows the API's message on the node page.
"""

from __future__ import annotations

from urllib.parse import urlencode

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lablease.dashboard import actions
from lablease.dashboard.routes import NO_OWNER, _node_response, _record, base, node_url, render
from lablease.store import StoreError

router = APIRouter(include_in_schema=False)
NO_HOURS = "Give the hours to extend by: a number above 0 (0.5 is 30 minutes)."


def _hours(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value <= 24 * 366 else None


@router.get("/ui/nodes/{name}/extend", response_class=HTMLResponse)
def confirm(request: Request, name: str, locked_by: str = "", hours: str = "") -> HTMLResponse:
    """The confirmation page of an extend (the node page's form without JavaScript); nothing changes here."""
    owner, amount = locked_by.strip(), _hours(hours.strip())
    if not owner or amount is None:
        return _node_response(request, name, 400, error=NO_OWNER if not owner else NO_HOURS, typed_owner=owner)
    if _record(request, name) is None:
        return render(request, "missing.html", {"name": name}, status=404)
    query = urlencode({"locked_by": owner, "hours": f"{amount:g}", "confirm": "yes"})
    return render(request, "confirm_extend.html", {"name": name, "owner": owner, "hours": f"{amount:g}",
                                                   "post_url": f"{node_url(request, name)}/extend?{query}"})


@router.post("/ui/nodes/{name}/extend", response_class=HTMLResponse)
async def extend(request: Request, name: str) -> Response:
    """Extend ``name``'s lock by ``hours`` as ``locked_by`` once ``confirm=yes``; the node page with the outcome."""
    if not actions.same_origin(request):
        return HTMLResponse("this form must be sent from the dashboard's own page", status_code=403)
    fields = await actions.read_fields(request)
    owner, hours = fields.get("locked_by", "").strip(), _hours(fields.get("hours", "").strip())
    if owner and hours is not None and fields.get("confirm") != "yes":
        return RedirectResponse(f"{node_url(request, name)}/extend?{urlencode({'locked_by': owner, 'hours': hours})}",
                                status_code=303)
    lab = request.app.state.lab
    error, status = "", 200
    if not owner or hours is None:
        error, status = (NO_OWNER if not owner else NO_HOURS), 400
    elif lab is None:
        error, status = "This server provisions no cloud nodes, so no lock expires.", 400
    else:
        try:
            await anyio.to_thread.run_sync(lambda: lab.policy.extend(name, owner, hours))
        except StoreError as exc:
            error, status = exc.message, exc.status
    if not error:
        response: Response = RedirectResponse(f"{node_url(request, name)}?done=extended", status_code=303)
    else:
        response = await anyio.to_thread.run_sync(
            lambda: _node_response(request, name, status, error=error, typed_owner=owner))
    response.set_cookie(actions.OWNER_COOKIE, owner, max_age=actions.COOKIE_SECONDS, path=base(request) + "/",
                        samesite="lax", httponly=True)
    return response
