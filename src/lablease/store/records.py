"""Node records as the store hands them out, and their paddles-compatible JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from lablease.store.lifecycle import NodeState

# Keys paddles returns for a node, in its order.
PADDLES_KEYS = (
    "name", "description", "up", "machine_type", "is_vm", "vm_host", "os_type", "os_version",
    "arch", "locked", "locked_since", "locked_by", "mac_address", "ssh_pub_key",
)
# lablease's extra keys; paddles clients ignore them.
EXTRA_KEYS = ("state", "cloud_server_id", "addresses", "last_error", "created_at", "updated_at", "provider")
# The running attempt and its lease: stored for the lab service, not part of the JSON answers.
ATTEMPT_KEYS = ("attempt_id", "volume_ids", "floating_ip_ids", "dns_written", "lease_owner", "lease_expires",
                "state_since")
# The lock's expiry and hold (lab/expiry.py): the lab service shows them for its own nodes (``presented``).
POLICY_KEYS = ("expires_at", "expiry_warned", "hold_until", "hold_reason")
# Columns read for a record (vm_host is resolved to the host's record separately).
COLUMNS = (tuple(k for k in PADDLES_KEYS if k != "vm_host") + ("id", "vm_host_id") + EXTRA_KEYS + ATTEMPT_KEYS
           + POLICY_KEYS)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def utcnow() -> datetime:
    """Naive UTC now, as paddles stores it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def format_time(value: datetime | None) -> str | None:
    """``2026-11-25 12:58:02.472657``, always with microseconds (teuthology's parser needs them)."""
    return value.strftime(TIME_FORMAT) if value is not None else None


def parse_time(value: str | datetime | None) -> datetime | None:
    """Accept paddles' format or ISO 8601; aware values are converted to naive UTC."""
    if value is None or isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError("expected a time like '2026-11-25 12:58:02.472657'") from None
    if parsed is not None and parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


@dataclass
class NodeRecord:
    """One node as stored; ``vm_host`` is the host's record (one level deep) or None."""

    id: int
    name: str
    description: str | None = None
    up: bool | None = None
    machine_type: str | None = None
    is_vm: bool = False
    os_type: str | None = None
    os_version: str | None = None
    arch: str | None = None
    locked: bool = False
    locked_since: datetime | None = None
    locked_by: str | None = None
    mac_address: str | None = None
    ssh_pub_key: str | None = None
    vm_host_id: int | None = None
    state: str = NodeState.IDLE  # a NodeState value (read back from the database as a plain str)
    cloud_server_id: str | None = None
    addresses: list[str] = field(default_factory=list)
    last_error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    attempt_id: str | None = None
    volume_ids: list[str] = field(default_factory=list)
    floating_ip_ids: list[str] = field(default_factory=list)
    dns_written: bool = False
    lease_owner: str | None = None
    lease_expires: datetime | None = None
    state_since: datetime | None = None
    provider: str | None = None
    expires_at: datetime | None = None
    expiry_warned: bool = False
    hold_until: datetime | None = None
    hold_reason: str | None = None
    vm_host: "NodeRecord | None" = None

    @classmethod
    def from_row(cls, row: Any) -> "NodeRecord":
        data = {k: getattr(row, k) for k in COLUMNS}
        data["addresses"] = list(data["addresses"] or [])
        data["volume_ids"] = list(data["volume_ids"] or [])
        data["floating_ip_ids"] = list(data["floating_ip_ids"] or [])
        data["dns_written"] = bool(data["dns_written"])
        data["expiry_warned"] = bool(data["expiry_warned"])
        for key in ("up", "is_vm", "locked"):  # SQLite hands back ints in some paths
            if data[key] is not None:
                data[key] = bool(data[key])
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """paddles' node JSON plus lablease's extra keys."""
        out: dict[str, Any] = {
            "name": self.name, "description": self.description, "up": self.up,
            "machine_type": self.machine_type, "is_vm": self.is_vm,
            "vm_host": self.vm_host.to_json() if self.vm_host else None,
            "os_type": self.os_type, "os_version": self.os_version, "arch": self.arch,
            "locked": self.locked, "locked_since": format_time(self.locked_since),
            "locked_by": self.locked_by, "mac_address": self.mac_address, "ssh_pub_key": self.ssh_pub_key,
            "state": self.state, "cloud_server_id": self.cloud_server_id, "addresses": list(self.addresses),
            "last_error": self.last_error, "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at), "provider": self.provider,
        }
        return out

    def lock_json(self) -> dict[str, Any]:
        """The short answer of the lock endpoints."""
        return {
            "name": self.name, "locked": self.locked, "locked_by": self.locked_by,
            "machine_type": self.machine_type, "is_vm": self.is_vm,
        }


@dataclass(frozen=True)
class NodeEventRecord:
    """One entry of a node's audit trail."""

    id: int
    node: str
    action: str
    who: str | None
    at: datetime
    old: dict[str, Any] | None
    new: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "node": self.node, "action": self.action, "who": self.who,
            "at": format_time(self.at), "old": self.old, "new": self.new,
        }


def jsonable(value: Any) -> Any:
    """A column value as it goes into an event's old/new JSON."""
    if isinstance(value, datetime):
        return format_time(value)
    return value
