"""How the lab's user commands show nodes, events and progress (rich tables, plain lines, a live view).

Everything here turns the server's JSON into text; nothing talks to the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

Node = dict[str, Any]


def fingerprint(host_key: str | None) -> str:
    """OpenSSH's SHA256 fingerprint of a ``<type> <base64> [comment]`` host key ("" when there is none)."""
    parts = (host_key or "").split()
    if not parts:
        return ""
    try:
        blob = base64.b64decode(parts[1] if len(parts) > 1 else parts[0], validate=True)
    except (binascii.Error, ValueError):
        return "(not a key)"
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _utc(value: str | None) -> datetime | None:
    """The server's naive-UTC time (``2026-11-25 12:58:02.472657``, with or without microseconds)."""
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def duration(seconds: float) -> str:
    """``45 s``, ``5 min``, ``2 h 5 min``, ``3 d 2 h``: how long, at a glance."""
    minutes, hours = int(seconds // 60), int(seconds // 3600)
    if seconds < 60:
        return f"{max(int(seconds), 0)} s"
    if hours < 1:
        return f"{minutes} min"
    if hours < 24:
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d {hours % 24} h"


def since(value: str | None, now: datetime | None = None) -> str:
    """How long ago ``value`` (naive UTC) was; "" when unknown."""
    then = _utc(value)
    if then is None:
        return ""
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    return duration((now - then).total_seconds())


def os_of(node: Node) -> str:
    return " ".join(str(node[k]) for k in ("os_type", "os_version") if node.get(k))


def addresses_of(node: Node) -> str:
    return ", ".join(node.get("addresses") or [])


def new_table(console: Console, *columns: str) -> Table:
    """A table with lines for a terminal, plain space-separated columns for logs and pipes."""
    return Table(*columns, box=box.SIMPLE if console.is_terminal else None, pad_edge=False)


def locked_table(console: Console, nodes: list[Node]) -> Table:
    """The nodes a lock gave: where to reach them and which host key to expect."""
    table = new_table(console, "name", "address(es)", "os", "ssh host key fingerprint")
    for n in sorted(nodes, key=lambda n: n["name"]):
        table.add_row(n["name"], addresses_of(n), os_of(n), fingerprint(n.get("ssh_pub_key")))
    return table


def targets_yaml(nodes: list[Node], user: str | None = "ubuntu") -> str:
    """teuthology's ``targets:`` block for a job's yaml: ``user@name: host key`` (no ``user@`` when ``user`` is
    empty), sorted by name, each key on one line as teuthology writes it."""
    import yaml

    at = f"{user}@" if user else ""
    targets = {f"{at}{n['name']}": n.get("ssh_pub_key") for n in sorted(nodes, key=lambda n: n["name"])}
    return yaml.safe_dump({"targets": targets}, default_flow_style=False, width=100_000)


def type_of(node: Node) -> str:
    """The node's machine type, and the provider that made it when that is another name (a machine type
    served by several providers): ``mixed via aws``."""
    machine_type, provider = node.get("machine_type") or "", node.get("provider")
    return f"{machine_type} via {provider}" if provider and provider != machine_type else machine_type


def list_table(console: Console, nodes: list[Node], now: datetime | None = None) -> Table:
    """``lablease list``: one row a node; an ``expires`` column when some lock has an expiry or a hold."""
    terms = any(n.get("expires_at") or n.get("hold_until") for n in nodes)
    table = new_table(console, "name", "type", "state", "locked by", "locked since", "description", "os", "address",
                      *(["expires"] if terms else []))
    for n in sorted(nodes, key=lambda n: n["name"]):
        table.add_row(n["name"], type_of(n), n.get("state") or "", n.get("locked_by") or "",
                      since(n.get("locked_since"), now), n.get("description") or "", os_of(n), addresses_of(n),
                      *([expires_text(n, now)] if terms else []))
    return table


def expires_text(node: Node, now: datetime | None = None) -> str:
    """``in 2 h 5 min``, ``5 min ago``, ``held 3 h (why)``: a lock's expiry and hold, at a glance."""
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    hold, end = _utc(node.get("hold_until")), _utc(node.get("expires_at"))
    if hold is not None:
        return f"held {duration((hold - now).total_seconds())} ({node.get('hold_reason') or ''})"
    if end is None:
        return ""
    left = (end - now).total_seconds()
    return f"in {duration(left)}" if left >= 0 else f"{duration(-left)} ago"


def summary_rows(nodes: list[Node]) -> list[dict[str, Any]]:
    """Counts by machine type and state (with how many are up and locked), sorted by both."""
    keys = [(n.get("machine_type") or "(none)", n.get("state") or "(none)") for n in nodes]
    total, up, locked = Counter(keys), Counter(), Counter()
    for key, n in zip(keys, nodes):
        up[key] += bool(n.get("up"))
        locked[key] += bool(n.get("locked"))
    return [{"machine_type": t, "state": s, "count": total[(t, s)], "up": up[(t, s)], "locked": locked[(t, s)]}
            for t, s in sorted(total)]


def summary_table(console: Console, rows: list[dict[str, Any]]) -> Table:
    """``teuthology-lock --summary``'s counts, one row per machine type and state, then the totals."""
    table = new_table(console, "type", "state", "count", "up", "locked")
    for col in table.columns[2:]:
        col.justify = "right"
    for r in rows:
        table.add_row(r["machine_type"], r["state"], str(r["count"]), str(r["up"]), str(r["locked"]))
    table.add_section()
    table.add_row("total", "", *(str(sum(r[k] for r in rows)) for k in ("count", "up", "locked")))
    return table


RECORD_KEYS = ("name", "machine_type", "provider", "state", "up", "locked", "locked_by", "locked_since", "description",
               "os_type", "os_version", "arch", "is_vm", "addresses", "cloud_server_id", "mac_address",
               "last_error", "expires_at", "hold_until", "hold_reason", "created_at", "updated_at")


def record_grid(node: Node) -> Table:
    """``lablease status``: the node's record as ``key value`` lines, its host key as a fingerprint."""
    grid = Table.grid(padding=(0, 2))
    for key in RECORD_KEYS:
        value = node.get(key)
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        if value is not None and value != "":
            grid.add_row(key, str(value))
    if node.get("ssh_pub_key"):
        grid.add_row("ssh host key", fingerprint(node["ssh_pub_key"]))
    return grid


def _short(value: Any, width: int = 40) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def change_text(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """An event's change as ``key: old → new``; an event without an old side lists its new values."""
    new = {k: v for k, v in (new or {}).items() if k not in ("error", "console")}
    if not old:
        return " ".join(f"{k}={_short(v)}" for k, v in new.items())
    keys = list(dict.fromkeys([*old, *new]))
    return "; ".join(f"{k}: {_short(old.get(k))} → {_short(new.get(k))}" for k in keys)


def events_table(console: Console, events: list[dict[str, Any]]) -> Table:
    """The node's events, oldest first: time (UTC), action, who, old → new, error."""
    table = new_table(console, "time (UTC)", "action", "who", "old → new", "error")
    for e in events:
        new = e.get("new") or {}
        table.add_row((e.get("at") or "")[:19], e.get("action") or "", e.get("who") or "",
                      change_text(e.get("old"), new), str(new.get("error") or new.get("last_error") or ""))
    return table


def console_logs(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each failed boot's console log kept with its event, oldest first: (heading, text)."""
    out = []
    for e in events:
        new = e.get("new") or {}
        if new.get("console"):
            out.append((f"console of {new.get('stage')} {new.get('status')} at {(e.get('at') or '')[:19]} "
                        f"(attempt {new.get('attempt', 1)}):", str(new["console"])))
    return out


def progress_line(event: dict[str, Any]) -> str:
    """One progress event as a plain line: ``node: stage status (12.3 s) [attempt 2] message``."""
    text = f"{event.get('node')}: {event.get('stage')} {event.get('status')} ({float(event.get('elapsed') or 0):.1f} s)"
    if (event.get("attempt") or 1) > 1:
        text += f" attempt {event['attempt']}"
    return text + (f": {event['message']}" if event.get("message") else "")


def stage_label(event: dict[str, Any]) -> str:
    """A stage with its step when the engine names one: ``volume (create 1 x 10 GB)``, ``volume (attach 1)``."""
    step = event.get("message") if event.get("status") == "start" else ""
    return f"{event.get('stage')} ({step})" if step else str(event.get("stage"))


class StageClock:
    """Each node's running stage and when it began; the next event of the node ends it, with its time.

    The engine reports when a stage starts (and when the node is ready): a stage is done when the next one
    starts, so its time is the difference of the two events' ``elapsed``. A failed or retried stage is not
    done; events of other kinds (a rate-gate wait) leave the running stage as it is.
    """

    def __init__(self) -> None:
        self._running: dict[str, tuple[str, float]] = {}

    def advance(self, event: dict[str, Any]) -> tuple[str, float] | None:
        """The stage ``event`` ends (label, seconds), or None."""
        status = event.get("status")
        if status not in ("start", "done", "failed", "retry"):
            return None
        node, elapsed = str(event.get("node")), float(event.get("elapsed") or 0)
        previous = self._running.pop(node, None)
        if status == "start":
            self._running[node] = (stage_label(event), elapsed)
        if previous is None or status in ("failed", "retry"):
            return None
        return previous[0], max(elapsed - previous[1], 0.0)


class PlainProgress:
    """Progress as plain lines on stderr: for logs, pipes and ``--json``; each stage's end with its time."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._lock = threading.Lock()
        self._clock = StageClock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            ended = self._clock.advance(event)
            if ended is not None:
                self._console.print(f"{event.get('node')}: {ended[0]} done in {ended[1]:.1f} s", markup=False,
                                    highlight=False)
            self._console.print(progress_line(event), markup=False, highlight=False)


class _NodeLine:
    """The latest stage of one node, and since when it has been at work (for a ticking clock)."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.started = time.monotonic() - float(event.get("elapsed") or 0)
        self.spinner = Spinner("dots")
        self.clock, self.times = StageClock(), []  # the stages done, with their seconds
        self.update(event)

    def update(self, event: dict[str, Any]) -> None:
        ended = self.clock.advance(event)
        if ended is not None:
            self.times.append(f"{ended[0]} {ended[1]:.1f} s")
        self.event = event
        self.finished = event.get("stage") == "ready" and event.get("status") == "done"
        self.failed = event.get("status") == "failed"
        self.elapsed = float(event.get("elapsed") or 0)

    def row(self) -> list[RenderableType]:
        mark: RenderableType = Text("✓", "green") if self.finished else Text("✗", "red") if self.failed \
            else self.spinner
        seconds = self.elapsed if self.finished or self.failed else time.monotonic() - self.started
        e = self.event
        attempt = f" (attempt {e['attempt']})" if (e.get("attempt") or 1) > 1 else ""
        words = ", ".join(self.times) if self.finished else str(e.get("message") or "")
        return [mark, str(e.get("node")), f"{e.get('stage')} {e.get('status')}{attempt}", f"{seconds:.0f} s",
                Text(words, "red" if self.failed else "")]


class LiveProgress:
    """A live line per node (stage, elapsed seconds) on a terminal, while the request runs."""

    def __init__(self, console: Console, title: str) -> None:
        self._title = Text(title, "bold")
        self._waiting = Spinner("dots", text=self._title)  # until the first node reports
        self._nodes: dict[str, _NodeLine] = {}
        self._lock = threading.Lock()
        self._live = Live(self, console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> "LiveProgress":
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.transient = not self._nodes  # a bare lock reported nothing: leave no stale spinner
        self._live.__exit__(None, None, None)

    def __call__(self, event: dict[str, Any]) -> None:
        name = str(event.get("node"))
        with self._lock:
            if name in self._nodes:
                self._nodes[name].update(event)
            else:
                self._nodes[name] = _NodeLine(event)

    def __rich__(self) -> RenderableType:
        grid = Table.grid(padding=(0, 1))
        with self._lock:
            for name in sorted(self._nodes):
                grid.add_row(*self._nodes[name].row())
        return Group(self._title if grid.rows else self._waiting, grid)
