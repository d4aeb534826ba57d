"""paddles' lock rules: who may lock, unlock or change a node, and what a change sets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lablease.store.eligibility import DESTROY, LOCK, UNLOCK
from lablease.store.errors import Forbidden, InvalidRequest
from lablease.store.lifecycle import NodeState
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


def unlock_values(locked_by: str, description: str | None) -> dict[str, Any]:
    """The update an owner's unlock asks for; paddles' 400 without ``locked_by``."""
    if not locked_by:
        raise InvalidRequest("Cannot unlock without specifying locked_by")
    values: dict[str, Any] = {"locked": False, "locked_by": locked_by}
    if description:
        values["description"] = description
    return values


def plan_changes(node: NodeRecord, values: dict[str, Any], now: datetime) -> tuple[dict[str, Any], str]:
    """Columns to write (only those that differ) and the event action: lock, unlock or update."""
    check_lock_change(node, values)
    check_not_busy(node, values)
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


def check_not_busy(node: NodeRecord, values: dict[str, Any]) -> None:
    """A lock change through the plain lock rules applies to a node in a state LOCK or UNLOCK allows
    (at rest, ``idle``) only; other states are the lab service's.

    Cloud nodes in other states are locked and unlocked by the lab service, which creates and
    destroys them on the way (``NodeStore.begin_destroy``); freeing such a record here would leave
    its server running behind an unlocked record.
    """
    locking = values.get("locked")
    # paddles' single-node lock takes a down node too, so only the rule's states apply here.
    if locking is None or locking == node.locked or node.state in (LOCK if locking else UNLOCK).states:
        return
    verb = "lock" if locking else "unlock"
    doing = {NodeState.PROVISIONING: "still being provisioned", NodeState.DESTROYING: "being destroyed",
             NodeState.DESTROY_FAILED: "waiting for its failed destroy to be retried",
             NodeState.READY: "a cloud node, and this server has no provider for its machine type to destroy it"
             }.get(node.state, node.state)
    raise Forbidden(f"Cannot {verb} {node.name}: it is {doing}")


def check_destroyable(node: NodeRecord) -> None:
    """An owner's unlock of a cloud node starts its destroy from the states DESTROY allows only
    (``ready``, ``destroy-failed``); the lock and holder were checked by check_lock_change."""
    if node.state in DESTROY.states:
        return
    doing = {NodeState.PROVISIONING: "still being provisioned; wait for its lock to finish",
             NodeState.DESTROYING: "already being destroyed", NodeState.IDLE: "not provisioned"
             }.get(node.state, node.state)
    raise Forbidden(f"Cannot unlock {node.name}: it is {doing}")
