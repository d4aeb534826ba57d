"""The paddles /nodes endpoints: thin HTTP over NodeStore, with and without the trailing slash."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from lablease.lockapi.errors import message
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
def lock_many(request: Request, body: LockMany) -> JSONResponse:
    """Lock ``count`` free nodes of a type, all or none; 503 when too few are free."""
    got = store_of(request).lock_many(
        body.count, body.machine_type, body.locked_by, body.description,
        os_type=body.os_type, os_version=body.os_version, arch=body.arch)
    return JSONResponse([n.to_json() for n in got])


@route("/nodes/unlock_many/", ["POST"])
def unlock_many(request: Request, body: UnlockMany) -> JSONResponse:
    """Unlock all the named nodes, or none of them."""
    got = store_of(request).unlock_many(body.names, body.locked_by, body.description)
    return JSONResponse([n.lock_json() for n in got])


@route("/nodes/lock_many/", ["GET", "PUT", "DELETE"])
@route("/nodes/unlock_many/", ["GET", "PUT", "DELETE"])
def many_wrong_method() -> JSONResponse:
    return message(400, "this endpoint takes POST only")


@route("/nodes/machine_types/", ["GET"])
def machine_types(request: Request) -> JSONResponse:
    return JSONResponse(store_of(request).machine_types())


@route("/nodes/{name}/lock/", ["PUT", "POST"])
def lock_node(request: Request, name: str, body: NodeFields | None = None) -> JSONResponse:
    """``locked`` true locks, false unlocks, absent checks (other fields still apply)."""
    node = store_of(request).lock(name, body.values() if body else {})
    return JSONResponse(node.lock_json())


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
    return JSONResponse([n.to_json() for n in store_of(request).list(flt)])


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
    return JSONResponse(store_of(request).get(name).to_json())


@route("/nodes/{name}/", ["PUT"])
def update_node(request: Request, name: str, body: NodeFields | None = None) -> JSONResponse:
    """Update; a forbidden lock change is 403 JSON (paddles answered 500 HTML)."""
    store_of(request).update_values(name, body.values() if body else {})
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
