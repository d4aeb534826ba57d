"""The summary page's history, read from the node event table: nodes in use over time, launch times.

Every lock, unlock and state move is already one row of ``node_events`` (who, when, old -> new),
so the history needs no table of its own. ``NodeStore.events`` reads one node's trail; the summary
needs every node's events of a time window, so this module runs that one read-only query itself.
The window filter scans the table (its index is by node); fine for a page that is not polled.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from lablease.store import NodeState, NodeStore
from lablease.store.models import node_events

# Actions that can carry a lock change ("locked" in new) or a state move ("state" in new).
ACTIONS = ("lock", "unlock", "update", "state")


@dataclass(frozen=True)
class Event:
    """The part of one event row the history needs."""

    node: str
    at: datetime
    old: dict[str, Any]
    new: dict[str, Any]


@dataclass(frozen=True)
class Launches:
    """Seconds from lock to SSH-ready of one machine type's launches in the window."""

    machine_type: str
    count: int
    p50: float
    p95: float


def read_events(store: NodeStore, since: datetime) -> list[Event]:
    """Lock, unlock, update and state events since ``since`` (naive UTC), oldest first."""
    stmt = (select(node_events.c.node, node_events.c.at, node_events.c.old, node_events.c.new)
            .where(node_events.c.at >= since, node_events.c.action.in_(ACTIONS))
            .order_by(node_events.c.id))
    with store.engines.read.begin() as conn:
        return [Event(r.node, r.at, r.old or {}, r.new or {}) for r in conn.execute(stmt)]


def in_use(events: Iterable[Event], locked_now: dict[str, bool], since: datetime,
           now: datetime) -> list[tuple[datetime, int]]:
    """How many nodes were locked from ``since`` to ``now``: a step series of (time, count) points.

    The count at ``since`` is worked back from today's records: a node whose first lock change in the
    window has ``old.locked`` was in that state before it; a node with none was as it is now.
    """
    changes = [e for e in events if "locked" in e.new]
    before: dict[str, bool] = {}
    for e in changes:
        before.setdefault(e.node, bool(e.old.get("locked", not e.new["locked"])))
    state = {name: before.get(name, locked) for name, locked in locked_now.items()}
    state.update({n: v for n, v in before.items() if n not in state})  # deleted since: still counted then
    count = sum(state.values())
    points = [(since, count)]
    for e in changes:
        locked = bool(e.new["locked"])
        if state.get(e.node, False) != locked:
            count += 1 if locked else -1
            state[e.node] = locked
            points.append((e.at, count))
    points.append((now, count))
    return points


def hourly_peaks(points: list[tuple[datetime, int]], since: datetime, hours: int) -> list[tuple[datetime, int]]:
    """The most nodes in use during each hour of the window (the chart's table form)."""
    peaks = []
    for h in range(hours):
        start, end = since + timedelta(hours=h), since + timedelta(hours=h + 1)
        level = next((c for t, c in reversed(points) if t <= start), points[0][1])  # the count as the hour began
        inside = [c for t, c in points if start < t < end]
        peaks.append((start, max([level, *inside])))
    return peaks


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]


def launch_times(events: Iterable[Event], types: dict[str, str | None]) -> list[Launches]:
    """p50 and p95 of ``provisioning -> ready`` seconds per machine type (``types``: node -> type)."""
    seconds: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if (e.new.get("state") == NodeState.READY and e.old.get("state") == NodeState.PROVISIONING
                and "seconds" in e.new):
            machine_type = types.get(e.node)
            if machine_type:
                seconds[machine_type].append(float(e.new["seconds"]))
    return [Launches(t, len(v), percentile(v, 50), percentile(v, 95)) for t, v in sorted(seconds.items())]
