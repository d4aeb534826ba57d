"""The paddles /nodes endpoints: thin HTTP over NodeStore, with and without the trailing slash."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Annotated

import anyio.to_thread
from annotated_types import Interval
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator

from lablease import __version__
from lablease.lockapi import locking
from lablease.lockapi.errors import error_docs
from lablease.lockapi.locking import LockContext
from lablease.lockapi.schemas import (
    MAX_COUNT, NO_NUL, About, Empty, LockMany, Node, NodeCreate, NodeEvent, NodeFields, ShortNode, UnlockMany,
    digits_only,
)
from lablease.store import NodeFilter, NodeStore
from lablease.web.errors import METHODS, refuse_methods

log = logging.getLogger(__name__)
# teuthology sends JSON bodies without a Content-Type header; parse them anyway.
router = APIRouter(strict_content_type=False)


# A node's name in a path: one segment (the edge refuses %2F), text without NUL.
# The pattern documents what lockapi.middleware checks (it is not checked twice).
NodeName = Path(json_schema_extra={"pattern": r"^[^/\x00]+$", "not": {"enum": [".", ".."]}},
                description="the node's name (`node1` or `node1.front.example.com`)")


def text_query() -> Query:  # noqa: ANN201 - one Query per parameter (FastAPI keeps per-parameter state in it)
    return Query(None, json_schema_extra={"pattern": NO_NUL})


# ``count``: decimal digits only (not ``5.0``, `` 5``, ``5_0``), up to MAX_COUNT.
ListCount = Annotated[Annotated[int, Interval(ge=0, le=MAX_COUNT), BeforeValidator(digits_only)] | None, Query()]
EventCount = Annotated[Annotated[int, Interval(ge=1, le=MAX_COUNT), BeforeValidator(digits_only)] | None, Query()]
DB = 503  # every endpoint that reads or writes the inventory answers 503 when the database keeps failing
ADMIN = {"x-lablease-admin": True}  # app.py turns this into the admin token's security scheme, when there is one


def ok_doc(model, what: str) -> dict:  # noqa: ANN001
    return {200: {"model": model, "description": what}}


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


def require_admin(what: str) -> Callable[[Request], None]:
    """The dependency of an admin endpoint: ``what`` (e.g. "creating a node") needs the admin token, when one
    is configured; a refusal names what was asked, so an operator knows which call wanted the token."""
    def check(request: Request) -> None:
        token = request.app.state.settings.admin_token
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(401, f"{what} needs this server's admin token: send the header "
                                     "'Authorization: Bearer <token>' (lablease commands: --token, "
                                     "LABLEASE_ADMIN_TOKEN or lablease.admin_token in the config)")
        if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
            raise HTTPException(403, f"{what} needs this server's admin token; the token given does not match")
    return check


def ok() -> JSONResponse:
    return JSONResponse({})


# Hot endpoints first: routes are matched in order of registration.
@route("/nodes/lock_many/", ["POST"], responses={
    **ok_doc(list[Node], "the locked nodes (for a cloud type: provisioned, ssh_pub_key holds the host key)"),
    **error_docs(400, 413, 503, said={503: "too few free nodes (`only N nodes available`); for a cloud type, "
                                           "provisioning failed and everything was undone; the service is "
                                           "shutting down; or the database kept failing"})})
async def lock_many(request: Request, body: LockMany) -> JSONResponse:
    """Lock ``count`` free nodes of a type, all or none; 503 when too few are free. For a cloud type
    (lab service) the nodes are provisioned first; 503 when that failed and everything was undone."""
    return answer(*await locking.lock_many(ctx_of(request), body))


@route("/nodes/unlock_many/", ["POST"], responses={
    **ok_doc(list[ShortNode], "the unlocked nodes"),
    **error_docs(400, 403, 413, 503, said={
        400: "invalid request, or a name that is not a node (`Could not find all nodes!`)",
        403: "a node is not held by locked_by, or its description differs; nothing was unlocked",
        503: "destroying a cloud node failed (it stays locked in destroy-failed), or the database kept failing"})})
async def unlock_many(request: Request, body: UnlockMany) -> JSONResponse:
    """Unlock all the named nodes, or none of them; cloud nodes are destroyed first."""
    return answer(*await locking.unlock_many(ctx_of(request), body))


def refuse(path: str, allow: tuple[str, ...], text: str) -> None:
    """Every other method at ``path`` (and without its slash) is 405 with ``Allow``, keeping paddles' message
    (paddles answered 400); these routes are not documented, and come before ``/nodes/{name}/``."""
    others = [m for m in METHODS if m not in allow]
    for form in (path, path.rstrip("/")):
        router.add_api_route(form, refuse_methods(allow, text), methods=others, include_in_schema=False)


refuse("/nodes/lock_many/", ("POST",), "this endpoint takes POST only")
refuse("/nodes/unlock_many/", ("POST",), "this endpoint takes POST only")


@router.get("/lablease/", responses={**ok_doc(About, "this server"), **error_docs(400, 413)})
def about(request: Request) -> JSONResponse:
    """What this server is: lablease's version, its lab domain (clients complete short names with it)
    and whether it provisions cloud machine types (the lab service)."""
    settings = request.app.state.settings
    lab = request.app.state.lab
    return JSONResponse({"server": "lablease", "version": __version__, "lab_domain": settings.lab_domain,
                         "cloud_machine_types": lab.cloud_machine_types() if lab is not None else []})


@route("/nodes/machine_types/", ["GET"], responses={
    **ok_doc(list[str], "the machine types in use, sorted"), **error_docs(400, 413, DB)})
def machine_types(request: Request) -> JSONResponse:
    return JSONResponse(store_of(request).machine_types())


@route("/nodes/{name}/lock/", ["PUT", "POST"], responses={
    **ok_doc(ShortNode, "the node after the change"),
    **error_docs(400, 403, 404, 413, DB, said={
        400: "invalid request, or a lock change without locked_by (`Cannot lock without specifying locked_by`)",
        403: "the lock rules refuse it (already locked, locked_by or description differ, the node is busy)",
        503: "unlocking a cloud node failed, or the database kept failing"})})
async def lock_node(request: Request, name: str = NodeName, body: NodeFields | None = None) -> JSONResponse:
    """``locked`` true locks, false unlocks, absent checks (other fields still apply)."""
    return answer(*await locking.lock_one(ctx_of(request), name, body.values() if body else {}))


refuse("/nodes/{name}/lock/", ("POST", "PUT"), "lock takes PUT or POST")


@route("/nodes/", ["GET"], responses={**ok_doc(list[Node], "the matching nodes, in name order"),
                                    **error_docs(400, 413, DB)})
def list_nodes(
    request: Request,
    locked: bool | None = None,
    machine_type: str | None = text_query(),
    os_type: str | None = text_query(),
    os_version: str | None = text_query(),
    locked_by: str | None = text_query(),
    up: bool | None = None,
    count: ListCount = None,
) -> JSONResponse:
    """Nodes matching the filters (``machine_type`` may be ``a|b``), in name order."""
    flt = NodeFilter(locked=locked, machine_type=machine_type or None, os_type=os_type or None,
                     os_version=os_version or None, locked_by=locked_by or None, up=up, count=count)
    ctx = ctx_of(request)
    return JSONResponse([ctx.node_json(n) for n in store_of(request).list(flt)])


@route("/nodes/", ["POST"], dependencies=[Depends(require_admin("creating a node"))], openapi_extra=ADMIN, responses={
    **ok_doc(Empty, "created"),
    **error_docs(400, 401, 403, 413, DB, said={
        400: "invalid request, a name holding '/', a vm_host that is not a node, or a name that exists "
             "(`Node with name X already exists`)", 403: "a wrong admin token, or a lock the lock rules refuse"})})
def create_node(request: Request, body: NodeCreate) -> JSONResponse:
    """Create a node; other fields are applied as an update. Answers ``{}``."""
    values = body.values()
    name = values.pop("name")
    store_of(request).create(name, values)
    log.info("node created name=%s", name)
    return ok()


@route("/nodes/{name}/", ["GET"], responses={**ok_doc(Node, "the node"), **error_docs(400, 404, 413, DB)})
def get_node(request: Request, name: str = NodeName) -> JSONResponse:
    return JSONResponse(ctx_of(request).node_json(store_of(request).get(name)))


@route("/nodes/{name}/", ["PUT"], responses={
    **ok_doc(Empty, "updated"),
    **error_docs(400, 403, 404, 413, DB, said={
        400: "invalid request, a vm_host that is not a node, or a lock change without locked_by",
        403: "the lock rules refuse the change (paddles answered 500 HTML here)",
        503: "a cloud node's lock change failed, or the database kept failing"})})
async def update_node(request: Request, name: str = NodeName, body: NodeFields | None = None) -> JSONResponse:
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


@route("/nodes/{name}/", ["DELETE"], dependencies=[Depends(require_admin("deleting a node"))], openapi_extra=ADMIN, responses={
    **ok_doc(Empty, "deleted"),
    **error_docs(400, 401, 403, 404, 413, DB, said={
        403: "a wrong admin token, or the node is not idle (unlock it first so its cloud resources go)"})})
def delete_node(request: Request, name: str = NodeName) -> JSONResponse:
    store_of(request).delete(name)
    log.info("node deleted name=%s", name)
    return ok()


@route("/nodes/{name}/events/", ["GET"], responses={
    **ok_doc(list[NodeEvent], "the node's events, oldest first (at most `count`)"),
    **error_docs(400, 404, 413, DB, said={404: "neither a node nor an event trail of that name"})})
def node_events(request: Request, name: str = NodeName,
                count: EventCount = None) -> JSONResponse:
    """The node's audit trail (lock, unlock, update, create, delete, provision), oldest first."""
    return JSONResponse([e.to_json() for e in store_of(request).events(name, limit=count)])
