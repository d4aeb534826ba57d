"""What an unlock refused because of a lock in flight tells its user: whether that lock was abandoned
(its process is gone, or its lease lapsed), when the reconciler cleans it, and the admin's way out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from lablease.lab.leases import abandoned, cleaned_by, gone_here
from lablease.store import NodeRecord, NodeState, NodeStore, NotFound
from lablease.store.records import utcnow

IN_FLIGHT = (NodeState.PROVISIONING, NodeState.DESTROYING)


def _at(when: datetime) -> str:
    return when.isoformat(timespec="seconds") + "Z"


def _when(node: NodeRecord, now: datetime, interval: float) -> str:
    by = cleaned_by(node.lease_owner, node.lease_expires, now, interval)
    return f"by {_at(by)}" if by is not None else "at the next `lablease reconcile` (no timer runs here)"


def explain(node: NodeRecord, now: datetime, interval: float) -> str | None:
    """Why ``node``'s unlock must wait, naming its lock's holder; None unless a lock is in flight on it."""
    if node.state not in IN_FLIGHT:
        return None
    force = f"an admin can run `lablease unlock --force {node.name}`"
    owner = node.lease_owner or "nobody"
    if abandoned(node.lease_owner, node.lease_expires, now):
        why = "process gone" if gone_here(node.lease_owner) else "its lease expired"
        return (f"Cannot unlock {node.name}: its lock was abandoned by {owner} ({why}); the reconciler cleans "
                f"it {_when(node, now, interval)}; {force}")
    doing = "still being provisioned" if node.state == NodeState.PROVISIONING else "being destroyed"
    expires = f" at {_at(node.lease_expires)}" if node.lease_expires else ""
    return (f"Cannot unlock {node.name}: it is {doing} by {owner}; wait for it to finish (if that process is "
            f"gone, its lease ends{expires} and the reconciler cleans it {_when(node, now, interval)}; {force})")


def explain_refusal(store: NodeStore, names: Sequence[str], message: str, interval: float) -> str:
    """``message`` (the store's refusal of an unlock) in full when it is about a lock in flight; else as is."""
    now = utcnow()
    for name in names:
        try:
            node = store.get(name)
        except NotFound:
            continue
        if node.name in message:
            return explain(node, now, interval) or message
    return message
