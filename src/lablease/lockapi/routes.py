"""The paddles /nodes endpoints: thin HTTP over NodeStore, with and without the trailing slash."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

import anyio.to_thread

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from lablease import __version__
from lablease.lockapi import locking
from lablease.lockapi.errors import message
from lablease.lockapi.locking import LockContext
from lablease.lockapi.schemas import MAX_COUNT, LockMany, NodeCreate, NodeFields, UnlockMany
from lablease.store import NodeFilter, NodeStore

log = logging.getLogger(__name__)
# teuthology sends JSON bodies without a Content-Type header; parse them anyway.
router = APIRouter(strict_content_type=False)


def route(path: str, methods: list[str], **kwargs) -> Callable:
    """Register ``path`` (documented) and its form without the trailing slash (not documented)."""
    def deco(fn: Callable) -> Callable:
        router.add_api_route(path, fn, methods=methods, **kwargs)
        router.add_api_route(path.rstrip("/"), fn, methods=methods, include_in_schema=False, **kwargs)
        return fn
    return deco


def store_of(request: Request) -> NodeStore:
    return request.app.state.store


def ctx_of(request: Request) -> LockContext:
    return request.app.state.lock_context


def answer(status: int, body) -> JSONResponse:  # noqa: ANN001
    return JSONResponse(body, status_code=status)


def require_admin(request: Request) -> None:
    """Creating and deleting nodes need the admin token when one is configured."""
    token = request.app.state.settings.admin_token
    if token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(401, "this server needs the admin token to create or delete nodes: "
                                 "send the header 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise HTTPException(403, "the admin token does not match")


def ok() -> JSONResponse:
    return JSONResponse({})


# Hot endpoints first: routes are matched in order of registration.
@route("/nodes/lock_many/", ["POST"])
async def lock_many(request: Request, body: LockMany) -> JSONResponse:
    """Lock ``count`` free nodes of a type, all or none; 503 when too few are free. For a cloud type
    (lab service) the nodes are provisioned first; 503 when that failed and everything was undone."""
    return answer(*await locking.lock_many(ctx_of(request), body))


@route("/nodes/unlock_many/", ["POST"])
async def unlock_many(request: Request, body: UnlockMany) -> JSONResponse:
    """Unlock all the named nodes, or none of them; cloud nodes are destroyed first."""
    return answer(*await locking.unlock_many(ctx_of(request), body))


@route("/nodes/lock_many/", ["GET", "PUT", "DELETE"])
@route("/nodes/unlock_many/", ["GET", "PUT", "DELETE"])
def many_wrong_method() -> JSONResponse:
    return message(400, "this endpoint takes POST only")


@router.get("/lablease/")
def about(request: Request) -> JSONResponse:
    """What this server is: lablease's version, its lab domain (clients complete short names with it)
    and whether it provisions cloud machine types (the lab service)."""
    settings = request.app.state.settings
    lab = request.app.state.lab
    return JSONResponse({"server": "lablease", "version": __version__, "lab_domain": settings.lab_domain,
                         "cloud_machine_types": sorted(lab.workers) if lab is not None else []})


@route("/nodes/machine_types/", ["GET"])
def machine_types(request: Request) -> JSONResponse:
    return JSONResponse(store_of(request).machine_types())


@route("/nodes/{name}/lock/", ["PUT", "POST"])
async def lock_node(request: Request, name: str, body: NodeFields | None = None) -> JSONResponse:
    """``locked`` true locks, false unlocks, absent checks (other fields still apply)."""
    return answer(*await locking.lock_one(ctx_of(request), name, body.values() if body else {}))


@route("/nodes/{name}/lock/", ["GET", "DELETE"])
def lock_wrong_method(name: str) -> JSONResponse:
    return message(400, "lock takes PUT or POST")


@route("/nodes/", ["GET"])
def list_nodes(
    request: Request,
    locked: bool | None = None,
    machine_type: str | None = None,
    os_type: str | None = None,
    os_version: str | None = None,
    locked_by: str | None = None,
    up: bool | None = None,
    count: int | None = Query(None, ge=0, le=MAX_COUNT),
) -> JSONResponse:
    """Nodes matching the filters (``machine_type`` may be ``a|b``), in name order."""
    flt = NodeFilter(locked=locked, machine_type=machine_type or None, os_type=os_type or None,
                     os_version=os_version or None, locked_by=locked_by or None, up=up, count=count)
    ctx = ctx_of(request)
    return JSONResponse([ctx.node_json(n) for n in store_of(request).list(flt)])


@route("/nodes/", ["POST"], dependencies=[Depends(require_admin)])
def create_node(request: Request, body: NodeCreate) -> JSONResponse:
    """Create a node; other fields are applied as an update. Answers ``{}``."""
    values = body.values()
    name = values.pop("name")
    store_of(request).create(name, values)
    log.info("node created name=%s", name)
    return ok()


@route("/nodes/{name}/", ["GET"])
def get_node(request: Request, name: str) -> JSONResponse:
    return JSONResponse(ctx_of(request).node_json(store_of(request).get(name)))


@route("/nodes/{name}/", ["PUT"])
async def update_node(request: Request, name: str, body: NodeFields | None = None) -> JSONResponse:
    """Update; a forbidden lock change is 403 JSON (paddles answered 500 HTML). A lock change of a
    cloud node goes through the lab service, as on ``/lock/``."""
    values = body.values() if body else {}
    ctx = ctx_of(request)
    if values.get("locked") is not None and ctx.lab is not None and \
            await anyio.to_thread.run_sync(ctx.lab.owns_any, [name]):
        status, got = await locking.lock_one(ctx, name, values)
        return answer(status, {}) if status == 200 else answer(status, got)
    await anyio.to_thread.run_sync(lambda: store_of(request).update_values(name, values))
    return ok()


@route("/nodes/{name}/", ["DELETE"], dependencies=[Depends(require_admin)])
def delete_node(request: Request, name: str) -> JSONResponse:
    store_of(request).delete(name)
    log.info("node deleted name=%s", name)
    return ok()


@route("/nodes/{name}/events/", ["GET"])
def node_events(request: Request, name: str, count: int | None = Query(None, ge=1, le=MAX_COUNT)) -> JSONResponse:
    """The node's audit trail (lock, unlock, update, create, delete, provision), oldest first."""
    return JSONResponse([e.to_json() for e in store_of(request).events(name, limit=count)])
