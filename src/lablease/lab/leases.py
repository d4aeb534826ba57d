"""Who holds a node's lease, and whether that holder is gone.

A lease owner id names the host, the pid and the pid's start time (``host:pid:start:random``), so a
service restarted on the same host can tell at once that the process which held a lease is dead,
even if its pid was reused since (the start time then differs), and take the lease over without
waiting for it to expire. Owners on other hosts cannot be checked: their leases expire.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

HOST_CHARS = 32  # lease_owner is String(64): host (32) + pid (7) + start (<= 12) + random (8) + colons


def _host() -> str:
    return socket.gethostname()[:HOST_CHARS]


def start_time(pid: int) -> str | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22); None when it does
    not exist or this is not Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after its last ')'.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def new_owner() -> str:
    """This process's lease owner id: unique across hosts and restarts, and checkable on this host."""
    pid = os.getpid()
    return f"{_host()}:{pid}:{start_time(pid) or '?'}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Owner:
    """A lease owner id taken apart; ``start`` is None when its process start time is unknown."""

    host: str
    pid: int
    start: str | None

    @classmethod
    def parse(cls, owner: str | None) -> "Owner | None":
        """The parts of an id made by ``new_owner`` (None for an older or foreign id)."""
        parts = (owner or "").split(":")
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), None if parts[2] == "?" else parts[2])


def gone_here(owner: str | None) -> bool:
    """Whether ``owner`` is a process of this host that no longer runs (its pid is gone or belongs to a
    process started later). False when it cannot be told: another host, an old id, no /proc."""
    parsed = Owner.parse(owner)
    if parsed is None or parsed.host != _host() or parsed.start is None:
        return False
    try:
        os.kill(parsed.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user: compare its start time
    return start_time(parsed.pid) != parsed.start


def abandoned(owner: str | None, expires: datetime | None, now: datetime) -> bool:
    """Whether a lease held by ``owner`` until ``expires`` is free to take over: expired, never set, or its
    owner is a dead process of this host."""
    return expires is None or expires < now or gone_here(owner)


def cleaned_by(owner: str | None, expires: datetime | None, now: datetime, interval: float) -> datetime | None:
    """When a reconciler pass (every ``interval`` s) will have taken over a lease: at the next pass once it is
    free; None when no timer runs (interval 0: only ``lablease reconcile``)."""
    if interval <= 0:
        return None
    free_at = now if abandoned(owner, expires, now) else max(expires or now, now)
    return free_at + timedelta(seconds=interval)
