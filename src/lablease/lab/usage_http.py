"""``GET /lab/usage/?since=…&by=owner|type``: node-seconds, provisioning seconds, locks and cost (lab.usage)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from lablease.lab.usage import read_trail, report, spans
from lablease.lockapi.errors import error_docs
from lablease.lockapi.schemas import TIME_EXAMPLE, TIME_TEXT
from lablease.store import InvalidRequest, NodeStore
from lablease.store.records import utcnow

router = APIRouter()
DEFAULT_DAYS = 30


class UsageRow(BaseModel):
    key: str
    node_seconds: float
    provisioning_seconds: float
    locks: int
    cost: float | None


class UsageTotal(BaseModel):
    node_seconds: float
    provisioning_seconds: float
    locks: int
    cost: float | None


class Usage(BaseModel):
    since: str
    until: str
    by: Literal["owner", "type"]
    rows: list[UsageRow]
    total: UsageTotal


def parse_since(text: str | None, now: datetime) -> datetime:
    """A date or ISO time (UTC unless it names its zone) as naive UTC; none: ``DEFAULT_DAYS`` before ``now``."""
    if not text:
        return now - timedelta(days=DEFAULT_DAYS)
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"since: {text!r} is not a date (2026-12-01) or an ISO time (2026-12-01T10:00:00Z)")\
            from None
    return at.astimezone(timezone.utc).replace(tzinfo=None) if at.tzinfo else at


def usage_of(store: NodeStore, prices: dict[str, float | None], since: datetime, until: datetime,
             by: str) -> tuple[dict[str, Any], list]:
    """The report and the spans it was made of (the dashboard draws them too)."""
    types = {n.name: n.machine_type or "" for n in store.list()}
    found = spans(read_trail(store), types)
    return report(found, since, until, by, prices), found


def prices_of(request: Request) -> dict[str, float | None]:
    lab = request.app.state.lab
    return {name: p.price_per_hour for name, p in lab.config.libcloud.providers.items()} if lab is not None else {}


@router.get("/lab/usage/", responses={
    200: {"model": Usage, "description": "usage since `since` (default: 30 days ago) until now, one row per owner "
                                         "or machine type, largest first; cost is null without a price_per_hour"},
    **error_docs(400, 413, 503, said={400: "since is not a date or an ISO time", 503: "the database kept failing"})})
async def usage(request: Request, since: str | None = Query(None, max_length=64, pattern=TIME_TEXT,
                                                          description=f"a date or a time like {TIME_EXAMPLE}"),
                by: Literal["owner", "type"] = Query("owner")) -> JSONResponse:
    """Node-seconds per owner or machine type from the node events: in use from a lock's answer to its unlock or
    destroy, provisioning counted apart, priced by each provider's price_per_hour."""
    now = utcnow()
    start = parse_since(since, now)
    answer, _ = await anyio.to_thread.run_sync(usage_of, request.app.state.store, prices_of(request), start, now, by)
    return JSONResponse(answer)
