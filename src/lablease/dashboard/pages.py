"""What each dashboard page shows, gathered from the store, the lab service and the stage tracker.

Functions here read; they run in a worker thread (the routes are plain ``def`` where they read) and
return the template's context. A plain lock server has no lab: the cloud parts are then left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Request

from lablease.client.render import change_text, console_logs, fingerprint, summary_rows
from lablease.dashboard import history
from lablease.dashboard.chart import step_chart
from lablease.dashboard.views import (
    COLUMNS,
    Row,
    TableQuery,
    choices,
    display_state,
    make_row,
    select_rows,
)
from lablease.store import NodeRecord
from lablease.store.records import utcnow

EVENTS_SHOWN = 500  # the newest ones; `lablease status NAME --json` has the whole trail
HOURS = 24
# What an unhealthy provider's state means, in the words of the line the pages show for it.
HEALTH_WORDS = {"quota": "the cloud's quota is used up", "auth": "the cloud refuses the credentials in driver_args",
                "outage": "the cloud does not answer or keeps failing", "other": "refills fail"}


def unhealthy(request: Request) -> list[dict[str, Any]]:
    """One line's worth per cloud provider whose warm-pool refills fail (none on a plain lock server)."""
    lab = request.app.state.lab
    if lab is None:
        return []
    snaps = [h.snapshot() for _, h in sorted(lab.health.items())]
    return [{"snap": s, "words": HEALTH_WORDS.get(s.state.value, s.state.value)} for s in snaps
            if s.state.value != "ok"]


def _all_nodes(request: Request) -> list[tuple[NodeRecord, dict[str, Any], bool]]:
    """Every record with its API JSON and whether the lab service provisions it (a cloud node)."""
    state = request.app.state
    lab = state.lab
    return [(n, state.lock_context.node_json(n), lab is not None and lab.owns(n)) for n in state.store.list()]


def nodes_page(request: Request) -> dict[str, Any]:
    """The nodes table: rows kept and ordered by the query string, and what the filters offer."""
    now = utcnow()
    cloud = request.app.state.lab is not None
    stages = getattr(request.app.state, "dashboard_stages", None)
    rows = [make_row(js, is_cloud, stages, now) for _, js, is_cloud in _all_nodes(request)]
    query = TableQuery.parse(request.query_params)
    shown = select_rows(rows, query)
    return {"query": query, "rows": shown, "total": len(rows), "choices": choices(rows, cloud),
            "unhealthy": unhealthy(request),
            "columns": [c for c in COLUMNS if cloud or not c.cloud], "cloud": cloud, "now": now,
            "busy": any(r.busy for r in shown), "sorted_by": next(c.title for c in COLUMNS if c.key == query.sort)}


# Rows that only keep the lease and the running attempt's bookkeeping (what was made so far, who works
# on the node): needed to finish or undo a node after a crash, noise when reading its story.
BOOKKEEPING = frozenset({"attempt", "lease"})


@dataclass(frozen=True)
class EventLine:
    """One line of the node page's history: an event, or (``details``) bookkeeping events collapsed."""

    at: str
    action: str
    who: str
    change: str
    error: str
    seconds: float | None
    details: tuple["EventLine", ...] = ()


def _event_line(event: dict[str, Any]) -> EventLine:
    new = event.get("new") or {}
    return EventLine(at=(event.get("at") or "")[:19], action=event.get("action") or "", who=event.get("who") or "",
                     change=change_text(event.get("old"), {k: v for k, v in new.items() if k != "seconds"}),
                     error=str(new.get("error") or new.get("last_error") or ""), seconds=new.get("seconds"))


def group_bookkeeping(lines: list[EventLine]) -> list[EventLine]:
    """``lines`` (newest first) with the bookkeeping events between two state moves collapsed into one
    line where the newest of them was: the story stays readable, the details one click away."""
    out: list[EventLine] = []
    group: list[EventLine] = []
    where = 0

    def flush() -> None:
        if group:
            who = ", ".join(dict.fromkeys(g.who for g in group if g.who))
            out.insert(where, EventLine(at=group[0].at, action="bookkeeping", who=who, error="", seconds=None,
                                        change=f"{len(group)} lease and attempt updates", details=tuple(group)))
            group.clear()

    for line in lines:
        if line.action in BOOKKEEPING and not line.error:
            if not group:
                where = len(out)
            group.append(line)
            continue
        if line.action == "state":
            flush()
        out.append(line)
    flush()
    return out


def node_page(request: Request, record: NodeRecord) -> dict[str, Any]:
    """A node's record, its cloud parts (lab service only) and its history, newest event first."""
    state = request.app.state
    node = state.lock_context.node_json(record)
    cloud = state.lab is not None and state.lab.owns(record)
    trail = state.store.events(record.name)
    events = group_bookkeeping([_event_line(e.to_json()) for e in reversed(trail[-EVENTS_SHOWN:])])
    stages = getattr(state, "dashboard_stages", None)
    row: Row = make_row(node, cloud, stages, utcnow())
    parts = None
    if cloud:
        parts = {"server": record.cloud_server_id or "", "volumes": list(record.volume_ids),
                 "dns": record.name if record.dns_written else "", "addresses": list(record.addresses),
                 "host_key": fingerprint(record.ssh_pub_key), "attempt": record.attempt_id or ""}
    return {"node": node, "row": row, "cloud": cloud, "parts": parts, "events": events,
            "events_total": len(trail), "events_shown": min(len(trail), EVENTS_SHOWN), "lab": state.lab is not None,
            "consoles": list(reversed(console_logs([e.to_json() for e in trail[-EVENTS_SHOWN:]])))}


def summary_page(request: Request) -> dict[str, Any]:
    """Counts by type and state, nodes in use over the last day, launch times, the reconciler's last pass."""
    state = request.app.state
    nodes = _all_nodes(request)
    now = utcnow()
    since = now - timedelta(hours=HOURS)
    events = history.read_events(state.store, since)
    points = history.in_use(events, {n.name: n.locked for n, _, _ in nodes}, since, now)
    lab = state.lab
    counts = summary_rows([{**js, "state": display_state(js, is_cloud)} for _, js, is_cloud in nodes])
    return {
        "counts": counts, "totals": {k: sum(r[k] for r in counts) for k in ("count", "up", "locked")},
        "chart": step_chart(points, since, now), "peaks": history.hourly_peaks(points, since, HOURS),
        "in_use_now": points[-1][1], "peak": max(c for _, c in points), "since": since, "now": now,
        "launches": history.launch_times(events, {n.name: n.machine_type for n, _, _ in nodes}),
        "lab": lab is not None, "unhealthy": unhealthy(request),
        "reconciler": [r.to_json() for r in lab.reconciler.last] if lab is not None else [],
        "reconcile_interval": lab.reconciler.interval if lab is not None else None,
    }
