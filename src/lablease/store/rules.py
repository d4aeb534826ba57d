"""paddles' lock rules: who may lock, unlock or change a node, and what a change sets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lablease.store.errors import Forbidden, InvalidRequest
from lablease.store.records import NodeRecord

# Keys a client may change (paddles' allowed_update_keys); vm_host arrives resolved to vm_host_id.
UPDATABLE = frozenset({
    "arch", "description", "os_type", "os_version", "is_vm", "locked", "locked_by", "locked_since",
    "mac_address", "machine_type", "ssh_pub_key", "up", "vm_host_id",
})


def check_lock_change(node: NodeRecord, values: dict[str, Any]) -> None:
    """Raise when ``values`` would change the lock in a way paddles forbids."""
    locking = values.get("locked")
    to = values.get("locked_by")
    desc = values.get("description")
    if locking is None:
        # Without a lock change the holder cannot change: that would hand a node over unseen.
        if "locked_by" in values and to != node.locked_by:
            raise Forbidden("Cannot change locked_by without locking or unlocking the node")
        return
    verb = "lock" if locking else "unlock"
    if node.locked == locking:
        if locking and node.locked_by == to and desc is not None and desc == node.description:
            return  # paddles: the same owner re-locks with the same description
        raise Forbidden(f"Cannot {verb} an already-{verb}ed node")
    if not to:
        raise InvalidRequest(f"Cannot {verb} without specifying locked_by")
    if not locking:
        if to != node.locked_by:
            raise Forbidden("Cannot unlock - locked_by values must match")
        if desc and desc != node.description:
            raise Forbidden("Cannot unlock - description values must match")


def plan_changes(node: NodeRecord, values: dict[str, Any], now: datetime) -> tuple[dict[str, Any], str]:
    """Columns to write (only those that differ) and the event action: lock, unlock or update."""
    check_lock_change(node, values)
    wanted = {k: v for k, v in values.items() if k in UPDATABLE and k != "locked"}
    action = "update"
    locking = values.get("locked")
    if locking is not None and locking != node.locked:
        wanted["locked"] = locking
        if locking:
            action = "lock"
            wanted["locked_since"] = now  # paddles: a lock always starts now
        else:
            action = "unlock"
            wanted["locked_since"] = None
            wanted["locked_by"] = None
    elif not node.locked:
        wanted.pop("locked_by", None)  # an unlocked node has no holder
        wanted.pop("locked_since", None)
    changes = {k: v for k, v in wanted.items() if getattr(node, k) != v}
    return changes, action
