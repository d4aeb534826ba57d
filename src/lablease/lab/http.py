"""The lab service's own endpoints beside paddles' /nodes API: live progress, status, metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from lablease.lab.bus import LabEvent
from lablease.lab.health import Health
from lablease.lab.policy_http import router as policy_router
from lablease.lab.service import LabService
from lablease.lab.usage_http import router as usage_router
from lablease.lockapi.errors import error_docs
from lablease.lockapi.routes import ADMIN, NodeName, require_admin
from lablease.lockapi.schemas import NO_NUL, Node
from lablease.store import NodeStore

router = APIRouter()
router.include_router(policy_router)  # extend, hold, release (lab.policy_http)
router.include_router(usage_router)  # usage (lab.usage_http)
KEEPALIVE_SECONDS = 15.0


class PassReport(BaseModel):
    """One reconciler pass of one provider (lablease.lab.reconciler.PassReport)."""

    machine_type: str
    found: dict[str, list[str]]
    pending: dict[str, list[str]]
    deleted: dict[str, list[str]]
    taken_over: list[str]
    destroys_retried: list[str]
    failed: list[str]
    dry_run: bool


class ProviderHealthModel(BaseModel):
    """A provider's health from its warm pool's refills (lablease.lab.health.HealthSnapshot)."""

    machine_type: str
    state: Health = Field(
        description="ok, or what the last failed refills said: quota used up, credentials refused, the cloud "
                    "unreachable or failing (outage), anything else (other)")
    since: str = Field(description="when it went into this state (UTC, as node times: 2026-11-25 12:58:02.472657)")
    message: str | None = Field(description="the last failure's message (none while ok)")
    failures: int = Field(description="failed refills in a row")
    next_refill: str | None = Field(description="when (UTC) the pool tries again after failures (none: no backoff)")


class WarmFigures(BaseModel):
    target: int = Field(description="min_ready of this OS (0: none, the nodes are drained)")
    ready: int = Field(description="warm nodes of this OS: ready, unlocked, up")


class ProviderStatus(BaseModel):
    """One cloud machine type of the lab service."""

    max_parallel: int
    min_ready: dict[str, int] = Field(description="the warm pool's minimum per <os_type>-<os_version>")
    health: ProviderHealthModel
    warm: dict[str, WarmFigures] = Field(description="per <os_type>-<os_version>: the pool's target and its "
                                                     "ready nodes")
    oldest_provisioning_seconds: float = Field(description="age of the oldest node in state provisioning (0: none)")
    expired_leases: int = Field(description="nodes whose holder's lease expired (the reconciler takes them over)")


class LabStatus(BaseModel):
    """``GET /lab/status/`` (lablease.lab.service.LabService.status)."""

    owner: str
    draining: bool
    in_flight: int
    providers: dict[str, ProviderStatus]
    reconciler: dict[str, Any]


def lab_metrics(store: NodeStore, warm_targets: dict[str, dict[str, int]] | None = None):  # noqa: ANN201
    """The lab's metrics on their own registry; give them to the LabService (``observer``), which feeds
    them its bus's events, its reconciler's passes and its providers' cloud calls. ``warm_targets``: each
    cloud machine type's ``min_ready``."""
    from prometheus_client import CollectorRegistry

    from lablease.lab.metrics import LabMetrics

    return LabMetrics(CollectorRegistry(), store, warm_targets)


def document(schema: dict[str, Any], lab: LabService) -> None:
    """Complete the OpenAPI document with what depends on the config: the cloud machine types reconcile takes."""
    for parameter in schema["paths"].get("/lab/reconcile/", {}).get("post", {}).get("parameters", []):
        if parameter["name"] == "machine_type":
            parameter["schema"] = {"anyOf": [{"type": "string", "enum": sorted(lab.workers)}, {"type": "null"}]}
            parameter["description"] = "only this cloud machine type (default: every one)"


def lab_of(request: Request) -> LabService:
    return request.app.state.lab


async def _sse(events: AsyncIterator[LabEvent], request: Request) -> AsyncIterator[bytes]:
    """Server-sent events, with a comment line now and then so proxies keep the stream open."""
    yield b": lablease progress\n\n"
    it = events.__aiter__()
    try:
        while not await request.is_disconnected():
            try:
                event = await asyncio.wait_for(it.__anext__(), KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                yield b": ping\n\n"
                continue
            yield b"event: progress\ndata: " + json.dumps(event.to_json()).encode() + b"\n\n"
    finally:
        await it.aclose()


_EVENTS = {"type": "string", "description": "`event: progress` blocks whose `data:` is a LabEvent as JSON, and "
                                          "`:` comment lines (keep-alives); the stream stays open"}


@router.get("/lab/progress/", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {"schema": _EVENTS}},
          "description": "server-sent events, one `progress` event per stage of a node"},
    **error_docs(400, 413)})
async def progress(request: Request,
                   request_id: str | None = Query(None, alias="request", max_length=64,
                                                  json_schema_extra={"pattern": NO_NUL}),
                   node: str | None = Query(None, max_length=256,
                                            json_schema_extra={"pattern": NO_NUL})) -> StreamingResponse:
    """Every stage of every node as it happens; ``request`` (a lock's request_id) or ``node`` narrows it."""
    def want(event: LabEvent) -> bool:
        return (request_id is None or event.request == request_id) and (node is None or event.node == node)
    stream = lab_of(request).bus.stream(want)
    return StreamingResponse(_sse(stream, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/lab/status/", responses={
    200: {"model": LabStatus, "description": "providers (with their health and node figures), requests in flight, "
                                             "draining, the last reconciler pass"},
    **error_docs(400, 413, 503, said={503: "the database kept failing while the nodes were counted"})})
def status(request: Request) -> JSONResponse:
    """The lab service's providers (health, warm pool against its target, the oldest provisioning node, expired
    leases), requests in flight and whether it is shutting down."""
    from lablease.lab.census import census

    answer = lab_of(request).status()
    providers = answer["providers"]
    figures = census(request.app.state.store.list(), {t: p["min_ready"] for t, p in providers.items()})
    for machine_type, provider in providers.items():
        provider.update(figures[machine_type].to_json())
    return JSONResponse(answer)


@router.post("/lab/reconcile/", dependencies=[Depends(require_admin("a reconciler pass (POST /lab/reconcile/)"))], openapi_extra=ADMIN, responses={
    200: {"model": list[PassReport], "description": "one report per provider"},
    **error_docs(400, 401, 403, 409, 413, 502, 503, said={
        400: "invalid request, or machine_type is not a cloud machine type of this service",
        403: "a wrong admin token", 502: "the cloud did not answer the reconciler's listing as expected",
        503: "the cloud cannot be reached (connection refused, its name does not resolve), or the database kept "
             "failing after retries"})})
async def reconcile(request: Request,
                    machine_type: str | None = Query(None, max_length=32, json_schema_extra={"pattern": NO_NUL}),
                    dry_run: bool = False,
                    settle: float | None = Query(None, ge=0, le=10, description=(
                        "look, wait this many seconds, look again: leaks seen both times are final in this pass "
                        "(deleted, or with dry_run planned); without it a leak is deleted when the next pass "
                        "sees it again"))) -> JSONResponse:
    """Run one reconciler pass now (admin): every action planned or done with its reason, leaks found, deleted
    and pending, nodes taken over, destroys retried.

    409 when another process's pass is running; run it again in a moment.
    """
    lab = lab_of(request)
    if machine_type is not None and machine_type not in lab.workers:
        return JSONResponse({"message": f"machine_type: {machine_type!r} is not a cloud machine type of this "
                                        f"service (known: {', '.join(sorted(lab.workers))})"}, status_code=400)
    reports = await anyio.to_thread.run_sync(lambda: lab.reconciler.run(machine_type, dry_run, settle))
    if reports is None:
        return JSONResponse({"message": "another reconciler pass is running; try again in a moment"},
                            status_code=409)
    return JSONResponse([r.to_json() for r in reports])


@router.post("/lab/nodes/{name}/force-unlock/",
             dependencies=[Depends(require_admin("forcing a node free (POST /lab/nodes/NAME/force-unlock/)"))], openapi_extra=ADMIN,
             responses={200: {"model": Node, "description": "the node, destroyed and free (idle, unlocked)"},
                        **error_docs(400, 401, 403, 404, 413, 503, said={
                            400: "invalid request, or the node is not of a cloud machine type of this service",
                            403: "a wrong admin token",
                            503: "destroying it failed: it stays locked in destroy-failed (see last_error) and the "
                                 "reconciler retries it; or the database kept failing"})})
async def force_unlock(request: Request, name: str = NodeName,
                       by: str = Query("admin", min_length=1, max_length=64, json_schema_extra={"pattern": NO_NUL},
                                       description="who forces it (named in the node's events)")) -> JSONResponse:
    """Destroy whatever a cloud node has in the cloud and DNS and free it, in any state, whoever holds it
    (admin): a create in flight on it, in this process or another, is stopped and rolled back."""
    node = await lab_of(request).force_unlock(name, by)
    return JSONResponse(request.app.state.lock_context.node_json(node))


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
    **error_docs(400, 413, 503, said={503: "the database kept failing while the node gauges were read"})})
def metrics(request: Request) -> Response:
    """Prometheus metrics of the lab (nodes by type and state, launches, destroys, cloud calls)."""
    body, content_type = request.app.state.lab_metrics.render()
    return Response(body, media_type=content_type)
