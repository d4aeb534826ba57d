"""The lock endpoints' behaviour, once, for both the FastAPI routes and the ASGI fast lane.

lock_many, unlock_many and a single node's lock change go to the lab service when it provisions
that machine type (cloud nodes), else to paddles' plain locking: the PostgreSQL async lane when
there is one, then ``NodeStore`` in a thread. Each function returns ``(status, body)``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, Protocol

import anyio.to_thread

from lablease.lockapi.errors import unlock_one_status
from lablease.lockapi.schemas import LockMany, UnlockMany
from lablease.store import NodeRecord, NodeStore, StoreError
from lablease.store.pg_async import AsyncLockLane

Answer = tuple[int, Any]


@dataclass(frozen=True)
class LockRequest:
    """One lock_many request, as the lab service gets it: paddles' fields, the OS to create, the
    ``openstack`` hints and the client's request id (which its progress stream is keyed by)."""

    count: int
    machine_type: str
    locked_by: str
    description: str | None = None
    os_type: str | None = None
    os_version: str | None = None
    arch: str | None = None
    hints: Any = None
    request_id: str | None = None
    lock_hours: float | None = None  # less than the machine type's default expiry (lab/policy.py)

    @classmethod
    def of(cls, body: LockMany) -> "LockRequest":
        return cls(count=body.count, machine_type=body.machine_type, locked_by=body.locked_by,
                   description=body.description, os_type=body.os_type, os_version=body.os_version,
                   arch=body.arch, hints=body.openstack, request_id=body.request_id, lock_hours=body.lock_hours)


class CloudLab(Protocol):
    """What the lock endpoints need of the lab service (``lablease.lab``), which plugs in from above:
    the lock API knows which requests to hand over, not how nodes are provisioned."""

    def cloud_machine_types(self) -> list[str]: ...
    def handles(self, machine_type: str | None) -> bool: ...
    def owns(self, node: NodeRecord) -> bool: ...
    def owns_any(self, names: Sequence[str]) -> bool: ...
    def presented(self, node: NodeRecord) -> dict[str, Any]: ...
    async def lock_many(self, req: LockRequest, abandoned: asyncio.Event | None = None) -> list[NodeRecord]: ...
    async def lock_one(self, name: str, values: dict[str, Any], *, hints: Any = None) -> NodeRecord: ...
    async def unlock_many(self, names: Sequence[str], locked_by: str,
                          description: str | None = None) -> list[NodeRecord]: ...


@dataclass
class LockContext:
    """What the lock endpoints work with; ``lab`` is None on a plain lock server."""

    store: NodeStore
    lane: AsyncLockLane | None = None
    lab: CloudLab | None = None

    def node_json(self, node: NodeRecord) -> dict[str, Any]:
        """A node as clients see it: paddles' JSON, with a lab-managed node presented as the lab decides."""
        data = node.to_json()
        if self.lab is not None and self.lab.owns(node):
            data.update(self.lab.presented(node))
        return data

    def short_json(self, node: NodeRecord) -> dict[str, Any]:
        data = node.lock_json()
        if self.lab is not None and self.lab.owns(node):
            data.update({k: v for k, v in self.lab.presented(node).items() if k in data})
        return data


async def _guard(coro) -> Answer:  # noqa: ANN001
    """Await ``coro``; a StoreError becomes its status and paddles' message body."""
    try:
        return 200, await coro
    except StoreError as exc:
        return exc.status, {"message": exc.message}


async def _in_thread(fn, *args: Any, **kwargs: Any) -> Answer:  # noqa: ANN001
    def run() -> Answer:
        try:
            return 200, fn(*args, **kwargs)
        except StoreError as exc:
            return exc.status, {"message": exc.message}
    return await anyio.to_thread.run_sync(run)


async def lock_many(ctx: LockContext, body: LockMany, abandoned: asyncio.Event | None = None) -> Answer:
    """``POST /nodes/lock_many/``: all or none; 503 when too few are free (or, for a cloud type, when
    provisioning failed and everything was undone). ``abandoned`` is set when the client went away:
    the cloud nodes of the request are then undone instead of being left locked for nobody."""
    args = (body.count, body.machine_type, body.locked_by, body.description)
    extra = {"os_type": body.os_type, "os_version": body.os_version, "arch": body.arch}
    if ctx.lab is not None and ctx.lab.handles(body.machine_type):
        status, got = await _guard(ctx.lab.lock_many(LockRequest.of(body), abandoned))
    else:
        status, got = await _guard(ctx.lane.lock_many(*args, **extra)) if ctx.lane is not None else (200, None)
        if status == 200 and got is None:
            status, got = await _in_thread(ctx.store.lock_many, *args, **extra)
    return (status, [ctx.node_json(n) for n in got]) if status == 200 else (status, got)


async def unlock_many(ctx: LockContext, body: UnlockMany) -> Answer:
    """``POST /nodes/unlock_many/``: all or none; cloud nodes are destroyed before they are freed."""
    if ctx.lab is not None and await anyio.to_thread.run_sync(ctx.lab.owns_any, body.names):
        status, got = await _guard(ctx.lab.unlock_many(body.names, body.locked_by, body.description))
    else:
        status, got = await _guard(ctx.lane.unlock_many(body.names, body.locked_by, body.description)) \
            if ctx.lane is not None else (200, None)
        if status == 200 and got is None:
            status, got = await _in_thread(ctx.store.unlock_many, body.names, body.locked_by, body.description)
    return (status, [ctx.short_json(n) for n in got]) if status == 200 else (status, got)


async def lock_one(ctx: LockContext, name: str, values: dict[str, Any]) -> Answer:
    """``PUT /nodes/<name>/lock/``: lock, unlock, or (``locked`` absent) apply the other fields."""
    locking = values.get("locked")
    if ctx.lab is not None and locking is not None and await anyio.to_thread.run_sync(ctx.lab.owns_any, [name]):
        if locking:
            status, got = await _guard(ctx.lab.lock_one(name, values))
            return (status, ctx.short_json(got)) if status == 200 else (status, got)
        status, got = await _guard(ctx.lab.unlock_many([name], values.get("locked_by") or "",
                                                       values.get("description")))
        status = unlock_one_status(status)  # teuthology's unlock_one: see lockapi/errors.py
        return (status, ctx.short_json(got[0])) if status == 200 else (status, got)
    status, got = await _in_thread(ctx.store.lock, name, values)
    return (status, ctx.short_json(got)) if status == 200 else (status, got)
