"""The usage page: node-hours per owner or machine type (lab.usage), and nodes in use over the last day."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import Request

from lablease.client.usage import hours
from lablease.dashboard.chart import step_chart
from lablease.lab.quota import quota_use
from lablease.lab.usage import in_use_points
from lablease.lab.usage_http import prices_of, usage_of
from lablease.store import NodeFilter
from lablease.store.records import utcnow

PERIODS = {"1": "last 24 hours", "7": "last 7 days", "30": "last 30 days"}


def usage_page(request: Request, by: str, days: str) -> dict[str, Any]:
    """The report of the chosen period and grouping, and a step chart of the nodes in use over the last day."""
    by = by if by in ("owner", "type") else "owner"
    days = days if days in PERIODS else "7"
    now = utcnow()
    since = now - timedelta(days=int(days))
    answer, found = usage_of(request.app.state.store, prices_of(request), since, now, by)
    day = now - timedelta(hours=24)
    points = in_use_points(found, day, now)
    return {"usage": answer, "by": by, "days": days, "periods": PERIODS, "hours": hours,
            "chart": step_chart(points, day, now), "in_use_now": points[-1][1], "peak": max(c for _, c in points),
            "priced": answer["total"]["cost"] is not None, "quotas": _quota_use(request)}


def _quota_use(request: Request) -> list[dict]:
    """Each limited owner's cloud nodes now against its quota (``libcloud.quotas``); [] without quotas."""
    lab = request.app.state.lab
    if lab is None:
        return []
    quotas = lab.config.libcloud.quotas
    locked = request.app.state.store.list(NodeFilter(locked=True))
    return quota_use(quotas, [n for n in locked if lab.handles(n.machine_type)])
