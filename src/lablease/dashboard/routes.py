"""The dashboard's HTTP routes under ``/ui/``: nodes, a node, the summary, and the unlock form.

Every page is complete HTML from the server, so it reads without JavaScript; ``static/dashboard.js``
then refreshes the live parts in place. None of these routes is in the OpenAPI schema: they are
pages for people, and the API they mirror is documented there already.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from lablease import __version__
from lablease.dashboard import actions, pages
from lablease.store import NodeRecord, NotFound

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
NO_OWNER = "Give your name as the lock's owner (locked_by)."
DONE = {"unlocked": "Unlocked.", "extended": "Extended."}


def base(request: Request) -> str:
    """Where the dashboard lives, behind any proxy prefix (``root_path``)."""
    return request.scope.get("root_path", "").rstrip("/") + "/ui"


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """A page; every page gets where it lives, the version and the lab's progress stream (if any)."""
    ui = base(request)
    lab = request.app.state.lab is not None
    shared = {"ui": ui, "version": __version__, "lab_domain": request.app.state.settings.lab_domain,
              "progress_url": f"{ui[:-3]}/lab/progress/" if lab else "",
              "owner_cookie": request.cookies.get(actions.OWNER_COOKIE, "")}
    return templates.TemplateResponse(request, name, {**shared, **context}, status_code=status,
                                      headers={"Cache-Control": "no-store"})


def node_url(request: Request, name: str) -> str:
    return f"{base(request)}/nodes/{quote(name, safe='')}"


@router.get("/")
@router.get("/ui")
def home(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{base(request)}/", status_code=307)


@router.get("/ui/", response_class=HTMLResponse)
def nodes(request: Request) -> HTMLResponse:
    """The nodes table, filtered and sorted by the query string (``type``, ``state``, ``owner``, ``sort``, ``dir``)."""
    return render(request, "nodes.html", {"page": "nodes", **pages.nodes_page(request)})


@router.get("/ui/summary", response_class=HTMLResponse)
def summary(request: Request) -> HTMLResponse:
    return render(request, "summary.html", {"page": "summary", **pages.summary_page(request)})


@router.get("/ui/usage", response_class=HTMLResponse)
def usage(request: Request, by: str = "owner", days: str = "7") -> HTMLResponse:
    """Node-hours per owner or machine type over a period (``days`` 1, 7 or 30), with a chart of the last day."""
    from lablease.dashboard.usage import usage_page

    return render(request, "usage.html", {"page": "usage", **usage_page(request, by, days)})


def _record(request: Request, name: str) -> NodeRecord | None:
    try:
        return request.app.state.store.get(name)
    except NotFound:
        return None


def _node_response(request: Request, name: str, status: int = 200, **extra: Any) -> HTMLResponse:
    record = _record(request, name)
    if record is None:
        return render(request, "missing.html", {"name": name}, status=404)
    return render(request, "node.html", {**pages.node_page(request, record), **extra}, status=status)


@router.get("/ui/nodes/{name}", response_class=HTMLResponse)
def node(request: Request, name: str, done: str = "") -> HTMLResponse:
    """A node's record, cloud parts and history; ``done=unlocked`` after a successful unlock."""
    return _node_response(request, name, notice=DONE.get(done, ""))


@router.get("/ui/nodes/{name}/unlock", response_class=HTMLResponse)
def confirm(request: Request, name: str, locked_by: str = "") -> HTMLResponse:
    """The confirmation page of an unlock (the node page's form without JavaScript); nothing changes here."""
    owner = locked_by.strip()
    if not owner:
        return _node_response(request, name, 400, error=NO_OWNER)
    if _record(request, name) is None:
        return render(request, "missing.html", {"name": name}, status=404)
    return render(request, "confirm.html", {"name": name, "owner": owner,
                                            "post_url": f"{node_url(request, name)}/unlock?"
                                                        f"{urlencode({'locked_by': owner, 'confirm': 'yes'})}"})


@router.post("/ui/nodes/{name}/unlock", response_class=HTMLResponse)
async def unlock(request: Request, name: str) -> Response:
    """Unlock ``name`` as ``locked_by`` through the API's unlock, once ``confirm=yes`` (the confirmation
    page's button, or the page's script after its dialog); a refusal shows the API's message."""
    if not actions.same_origin(request):
        return HTMLResponse("this form must be sent from the dashboard's own page", status_code=403)
    fields = await actions.read_fields(request)
    owner = fields.get("locked_by", "").strip()
    if not owner:
        return await anyio.to_thread.run_sync(lambda: _node_response(request, name, 400, error=NO_OWNER))
    if fields.get("confirm") != "yes":
        return RedirectResponse(f"{node_url(request, name)}/unlock?{urlencode({'locked_by': owner})}", status_code=303)
    outcome = await actions.unlock(request, name, owner)
    if outcome.ok:
        response: Response = RedirectResponse(f"{node_url(request, name)}?done=unlocked", status_code=303)
    else:
        response = await anyio.to_thread.run_sync(
            lambda: _node_response(request, name, outcome.status, error=outcome.message, typed_owner=owner))
    response.set_cookie(actions.OWNER_COOKIE, owner, max_age=actions.COOKIE_SECONDS, path=base(request) + "/",
                        samesite="lax", httponly=True)
    return response
