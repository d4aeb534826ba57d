"""An owner's changes to a cloud lock's terms: ``POST /lab/nodes/<name>/extend/``, ``/hold/`` and ``/release/``.

The owner is named as paddles' unlock names it (``locked_by`` must be the lock's): 403 otherwise. Each
answers the node as ``GET /nodes/<name>/`` shows it (with ``expires_at``, ``hold_until``, ``hold_reason``).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from lablease.lockapi.errors import error_docs
from lablease.lockapi.routes import NodeName
from lablease.lockapi.schemas import LockHours, Node, Text, _Body
from lablease.store import InvalidRequest, NodeRecord
from lablease.store.models import LOCKED_BY_LEN

router = APIRouter()
REASON_LEN = 500


class Owner(_Body):
    locked_by: Text = Field(..., min_length=1, max_length=LOCKED_BY_LEN, description="the lock's owner")


class Extend(Owner):
    hours: LockHours = Field(..., description="how much later the lock expires (from its expiry, or from now "
                                              "if that is past)")


class Hold(Owner):
    hours: LockHours = Field(..., description="how long from now the hold keeps the node past its expiry")
    reason: Text = Field(..., min_length=1, max_length=REASON_LEN, description="why (shown with the node)")


_DOCS = {200: {"model": Node, "description": "the node with its new terms"},
         **error_docs(400, 403, 404, 413, 503, said={
             400: "invalid request, a node of a type without a lock policy, or more than the policy allows "
                  "(the message names the setting)",
             403: "the node is not locked, or not by locked_by", 503: "the database kept failing"})}


async def _owned(request: Request, name: str, change: Callable[[], NodeRecord]) -> JSONResponse:
    lab = request.app.state.lab
    node = await anyio.to_thread.run_sync(request.app.state.store.get, name)
    if not lab.owns(node):
        raise InvalidRequest(f"{node.name} is not of a cloud machine type of this service")
    return JSONResponse(request.app.state.lock_context.node_json(await anyio.to_thread.run_sync(change)))


@router.post("/lab/nodes/{name}/extend/", responses=_DOCS)
async def extend(request: Request, body: Extend, name: str = NodeName) -> JSONResponse:
    """The lock's owner moves its expiry ``hours`` later, at most to its type's ``lock_hours_max`` from the lock."""
    policy = request.app.state.lab.policy
    return await _owned(request, name, lambda: policy.extend(name, body.locked_by, body.hours))


@router.post("/lab/nodes/{name}/hold/", responses=_DOCS)
async def hold(request: Request, body: Hold, name: str = NodeName) -> JSONResponse:
    """The lock's owner keeps the node past its expiry for ``hours`` (at most ``hold_hours_max``), saying why."""
    policy = request.app.state.lab.policy
    return await _owned(request, name, lambda: policy.hold(name, body.locked_by, body.hours, body.reason))


@router.post("/lab/nodes/{name}/release/", responses=_DOCS)
async def release(request: Request, body: Owner, name: str = NodeName) -> JSONResponse:
    """The lock's owner ends its hold; a lock past its expiry is then destroyed by the next reconciler pass."""
    policy = request.app.state.lab.policy
    return await _owned(request, name, lambda: policy.release(name, body.locked_by))
