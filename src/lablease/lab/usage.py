"""Usage: node-seconds per owner and machine type, computed from the node event table (issue 22).

Every lock, state move and unlock is already a row of ``node_events``, so usage needs no table of its own.
The machine type is the one the node's events last named (its creation), else its record's. A node is *in use* by its owner from the moment its lock is answered (``provisioning -> ready`` while
locked, or a warm node's claim) until its unlock or destroy starts (``ready -> destroying``, an unlock, a
return to the warm pool); *provisioning* (locked and ``provisioning``: from the lock to ready, or to the
failure that released it) is counted apart. A provider's ``price_per_hour`` prices both: the server exists,
and is paid for, the whole time. The attempt's ``provider`` (an ``attempt`` event) names the provider;
without one, the machine type does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from lablease.store import NodeStore
from lablease.store.models import node_events

ACTIONS = ("state", "lock", "unlock", "update", "pool", "attempt", "force-unlock")
USE, PROVISIONING = "use", "provisioning"
BY = ("owner", "type")


@dataclass(frozen=True)
class Trail:
    """The part of one event row usage needs."""

    node: str
    at: datetime
    new: dict[str, Any]


@dataclass(frozen=True)
class Span:
    """One stretch of a node's time: in use by ``owner``, or provisioning for it; ``end`` None: still going."""

    node: str
    machine_type: str
    owner: str
    provider: str
    kind: str
    start: datetime
    end: datetime | None

    def seconds(self, since: datetime, until: datetime) -> float:
        """Seconds of this span within [since, until]."""
        end = until if self.end is None else min(self.end, until)
        return max(0.0, (end - max(self.start, since)).total_seconds())


def read_trail(store: NodeStore) -> list[Trail]:
    """Every lock, unlock, state and attempt event of the table, oldest first (the whole trail: a lock that
    began before ``since`` still counts from ``since``)."""
    stmt = (select(node_events.c.node, node_events.c.at, node_events.c.new)
            .where(node_events.c.action.in_(ACTIONS)).order_by(node_events.c.id))
    with store.engines.read.begin() as conn:
        return [Trail(r.node, r.at, r.new or {}) for r in conn.execute(stmt)]


def spans(trail: Iterable[Trail], machine_types: Mapping[str, str]) -> list[Span]:
    """The in-use and provisioning spans of every node in ``trail`` (oldest first per node)."""
    now_of: dict[str, dict[str, Any]] = defaultdict(lambda: {"state": None, "locked": False, "owner": None,
                                                            "provider": None, "type": None, "open": None})
    out: list[Span] = []
    for event in trail:
        node = now_of[event.node]
        new = event.new
        if "state" in new:
            node["state"] = new["state"]
        if "locked" in new:
            node["locked"] = bool(new["locked"])
        if "locked_by" in new:
            node["owner"] = new["locked_by"]
        if new.get("provider"):
            node["provider"] = new["provider"]
        if new.get("machine_type"):  # the node's creation or update: its type then (a removed node keeps it)
            node["type"] = new["machine_type"]
        kind = (USE if node["state"] == "ready" else PROVISIONING if node["state"] == "provisioning" else None) \
            if node["locked"] and node["owner"] else None
        opened = node["open"]
        if opened is not None and (opened.kind, opened.owner) == (kind, node["owner"]):
            continue
        machine_type = node["type"] or machine_types.get(event.node, "")
        if opened is not None:
            out.append(Span(**{**opened.__dict__, "end": event.at}))
        node["open"] = None if kind is None else Span(event.node, machine_type, node["owner"],
                                                      node["provider"] or machine_type, kind, event.at, None)
    out.extend(n["open"] for n in now_of.values() if n["open"] is not None)
    return out


def last_use_ended(trail: list[Trail], machine_type: str) -> Span | None:
    """The in-use span that the node's latest move to ``destroying`` ended (what a freed node adds to
    ``lablease_node_seconds_total``), or None (a warm node's destroy, a failed launch)."""
    ends = [e.at for e in trail if e.new.get("state") == "destroying"]
    if not ends:
        return None
    used = [s for s in spans(trail, {e.node: machine_type for e in trail}) if s.kind == USE and s.end == ends[-1]]
    return used[-1] if used else None


def report(all_spans: Iterable[Span], since: datetime, until: datetime, by: str,
           prices: Mapping[str, float | None]) -> dict[str, Any]:
    """Rows of node-seconds, provisioning seconds, locks and cost per owner (``by`` "owner") or machine type
    ("type") within [since, until], largest first, and their total."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}, not {by!r}")
    rows: dict[str, dict[str, Any]] = {}
    for span in all_spans:
        seconds = span.seconds(since, until)
        if seconds <= 0 and not (span.start >= since and span.start <= until):
            continue
        key = span.owner if by == "owner" else span.machine_type
        row = rows.setdefault(key, {"key": key, "node_seconds": 0.0, "provisioning_seconds": 0.0, "locks": 0,
                                    "cost": None})
        row["node_seconds" if span.kind == USE else "provisioning_seconds"] += seconds
        row["locks"] += span.kind == USE
        price = prices.get(span.provider)
        if price is not None:
            row["cost"] = (row["cost"] or 0.0) + seconds / 3600 * price
    ordered = sorted(rows.values(), key=lambda r: (-r["node_seconds"], r["key"]))
    for row in ordered:
        _round(row)
    total = {"node_seconds": sum(r["node_seconds"] for r in ordered),
             "provisioning_seconds": sum(r["provisioning_seconds"] for r in ordered),
             "locks": sum(r["locks"] for r in ordered),
             "cost": None if all(r["cost"] is None for r in ordered) else sum(r["cost"] or 0 for r in ordered)}
    return {"since": _iso(since), "until": _iso(until), "by": by, "rows": ordered, "total": _round(total)}


def in_use_points(all_spans: Iterable[Span], since: datetime, until: datetime) -> list[tuple[datetime, int]]:
    """How many nodes were in use from ``since`` to ``until``: a step series for dashboard.chart."""
    changes: dict[datetime, int] = defaultdict(int)
    count = 0
    for span in all_spans:
        if span.kind != USE or span.seconds(since, until) <= 0:
            continue
        if span.start <= since:
            count += 1
        else:
            changes[span.start] += 1
        if span.end is not None and span.end < until:
            changes[span.end] -= 1
    points = [(since, count)]
    for at in sorted(changes):
        count += changes[at]
        points.append((at, count))
    return points + [(until, count)]


def _round(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("node_seconds", "provisioning_seconds"):
        row[key] = round(row[key], 3)
    if row["cost"] is not None:
        row["cost"] = round(row["cost"], 4)
    return row


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")
