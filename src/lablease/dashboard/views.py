"""The nodes table as data: rows from node JSON, the filters and the sort of the page's query string.

Kept apart from the routes so the rules (what "state" means for a plain lock server's node, how
columns sort, what a filter matches) are plain functions over the same node JSON the API answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from lablease.client.render import addresses_of, duration, os_of, type_of
from lablease.dashboard.stages import Stage, StageTracker
from lablease.store.lifecycle import NodeState
from lablease.store.records import parse_time

BUSY = frozenset({NodeState.PROVISIONING, NodeState.DESTROYING})
DOWN = "down"


@dataclass(frozen=True)
class Column:
    """A column of the nodes table; ``cloud`` columns are shown only by the lab service."""

    key: str
    title: str
    cloud: bool = False


COLUMNS = (
    Column("name", "Name"), Column("type", "Machine type"), Column("state", "State"),
    Column("stage", "Stage", cloud=True), Column("owner", "Owner"), Column("since", "Locked since"),
    Column("description", "Description"), Column("os", "OS"), Column("address", "Address"),
)
SORTABLE = frozenset(c.key for c in COLUMNS)


@dataclass
class Row:
    """One node as the table shows it."""

    name: str
    type: str
    state: str
    cloud: bool
    up: bool
    owner: str
    since: datetime | None
    since_text: str
    description: str
    os: str
    address: str
    stage: Stage | None = None
    last_error: str = ""
    type_text: str = ""  # the type as shown: with the provider that made the node when that is another name

    @property
    def busy(self) -> bool:
        return self.state in BUSY

    @property
    def stage_text(self) -> str:
        return self.stage.label() if self.stage is not None and self.busy else ""


def display_state(node: Mapping[str, Any], cloud: bool) -> str:
    """A cloud node's lifecycle state; for any other node "locked" or "free" (its stored state says nothing)."""
    if cloud:
        return node.get("state") or NodeState.IDLE
    return "locked" if node.get("locked") else "free"


def make_row(node: Mapping[str, Any], cloud: bool, stages: StageTracker | None, now: datetime) -> Row:
    since = parse_time(node.get("locked_since"))
    return Row(
        name=node["name"], type=node.get("machine_type") or "", state=display_state(node, cloud), cloud=cloud,
        up=node.get("up") is not False, owner=node.get("locked_by") or "", since=since,
        since_text=duration((now - since).total_seconds()) if since else "",
        description=node.get("description") or "", os=os_of(dict(node)), address=addresses_of(dict(node)),
        stage=stages.get(node["name"]) if stages is not None and cloud else None,
        last_error=node.get("last_error") or "", type_text=type_of(dict(node)))


@dataclass(frozen=True)
class TableQuery:
    """The page's query string: filters by type, state and owner, and the sort."""

    type: str = ""
    state: str = ""
    owner: str = ""
    sort: str = "name"
    desc: bool = False

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> TableQuery:
        sort = params.get("sort", "name")
        return cls(type=params.get("type", "").strip(), state=params.get("state", "").strip(),
                   owner=params.get("owner", "").strip(), sort=sort if sort in SORTABLE else "name",
                   desc=params.get("dir") == "desc")

    def query_string(self, **change: Any) -> str:
        """This query with ``change`` applied, as ``?a=b`` (defaults left out, so links stay short)."""
        values = {"type": self.type, "state": self.state, "owner": self.owner, "sort": self.sort,
                  "dir": "desc" if self.desc else "", **change}
        if values["sort"] == "name":
            values["sort"] = ""
        text = urlencode({k: v for k, v in values.items() if v})
        return f"?{text}" if text else "?"

    def sort_link(self, key: str) -> str:
        """Sort by ``key``; the column already sorted by flips its direction."""
        flip = key == self.sort and not self.desc
        return self.query_string(sort=key, dir="desc" if flip else "")

    def aria_sort(self, key: str) -> str:
        if key != self.sort:
            return "none"
        return "descending" if self.desc else "ascending"

    def matches(self, row: Row) -> bool:
        if self.type and row.type != self.type:
            return False
        if self.state == DOWN and row.up:
            return False
        if self.state and self.state != DOWN and row.state != self.state:
            return False
        return not self.owner or self.owner.casefold() in row.owner.casefold()


def _natural(text: str) -> list[Any]:
    """``node2`` before ``node10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.casefold()) for part in re.split(r"(\d+)", text)]


def _sort_value(row: Row, key: str) -> Any:
    if key == "since":
        return row.since
    value = {"stage": row.stage_text}.get(key, getattr(row, key, ""))
    return _natural(value) if value else None


def select_rows(rows: Iterable[Row], query: TableQuery) -> list[Row]:
    """The rows ``query`` keeps, in its order; empty values sort last either way, then by name."""
    kept = sorted((r for r in rows if query.matches(r)), key=lambda r: _natural(r.name))
    valued = [r for r in kept if _sort_value(r, query.sort) is not None]
    empty = [r for r in kept if _sort_value(r, query.sort) is None]
    valued.sort(key=lambda r: _sort_value(r, query.sort), reverse=query.desc)
    return valued + empty


@dataclass
class Choices:
    """What the filter controls offer: the values present in the inventory."""

    types: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)


def choices(rows: list[Row], cloud: bool) -> Choices:
    lifecycle = [state.value for state in NodeState] if cloud else []  # in lifecycle order
    present = {r.state for r in rows}
    states = [s for s in lifecycle if s in present or cloud] + sorted(present - set(lifecycle)) + [DOWN]
    return Choices(types=sorted({r.type for r in rows if r.type}), states=states,
                   owners=sorted({r.owner for r in rows if r.owner}, key=str.casefold))
