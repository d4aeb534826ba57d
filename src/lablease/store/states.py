"""The node row as the lab service's state machine: compare-and-set moves, attempts and leases.

Mixed into NodeStore. Every move is one transaction that checks the current state (and the
lock rules where a client asks for it), writes the new state with its fields and one event
(actor, error, seconds spent in the previous state). lifecycle.MOVES lists the moves allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from lablease.hostnames import fold_name
from lablease.store import queries as q
from lablease.store.errors import Conflict, Forbidden, InvalidRequest, StoreError
from lablease.store.records import NodeRecord, jsonable, utcnow
from lablease.store.eligibility import LOCK, UNLOCK
from lablease.store.lifecycle import NodeState, check_move
from lablease.store.rules import check_destroyable, check_lock_change, plan_changes, unlock_values

# Columns a state move or an attempt note may set.
STATE_FIELDS = frozenset({
    "locked", "locked_by", "locked_since", "description", "os_type", "os_version", "arch", "ssh_pub_key",
    "cloud_server_id", "addresses", "last_error", "attempt_id", "volume_ids", "floating_ip_ids",
    "dns_written", "lease_owner", "lease_expires", "provider", "expires_at", "expiry_warned", "hold_until",
    "hold_reason",
})
# What a cloud node forgets when it is free again: the lock's own fields (its description, the OS it
# was made with) and the attempt's; what the inventory says of it (arch, vm_host, mac_address...) stays.
CLEARED_ON_FREE: dict[str, Any] = {
    "locked": False, "locked_by": None, "locked_since": None, "description": None, "os_type": None,
    "os_version": None, "ssh_pub_key": None, "cloud_server_id": None,
    "addresses": [], "attempt_id": None, "volume_ids": [], "floating_ip_ids": [], "dns_written": False,
    "lease_owner": None, "lease_expires": None, "last_error": None, "provider": None, "expires_at": None,
    "expiry_warned": False, "hold_until": None, "hold_reason": None,
}


class StateMachine:
    """State moves of NodeStore (needs its ``_write``, ``_one``, ``_records``, ``_event`` helpers)."""

    def _move(self, conn: Connection, node: NodeRecord, to: str, who: str | None,
              fields: dict[str, Any], now: datetime, action: str = "state") -> NodeRecord:
        check_move(node.name, node.state, to)
        unknown = set(fields) - STATE_FIELDS
        if unknown:
            raise InvalidRequest(f"unknown node field(s): {', '.join(sorted(unknown))}")
        changes = {k: v for k, v in fields.items() if getattr(node, k) != v}
        changes.update(state=to, state_since=now)
        conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **changes, "updated_at": now})
        old = {k: jsonable(getattr(node, k)) for k in changes if k != "state_since"}
        new = {k: jsonable(v) for k, v in changes.items() if k != "state_since"}
        if node.state_since is not None:
            new["seconds"] = round((now - node.state_since).total_seconds(), 3)
        self._event(conn, [self._event_row(node.name, action, who, now, old, new)])  # type: ignore[attr-defined]
        return replace(node, **changes, updated_at=now)

    def transition(self, name: str, expect: str | Sequence[str], to: str, *, who: str | None = None,
                   **fields: Any) -> NodeRecord:
        """Move ``name`` from ``expect`` (a state or several) to ``to`` and set ``fields``, atomically.

        Conflict when the node is in another state; InvalidRequest when the move is not allowed.
        """
        expected = (expect,) if isinstance(expect, str) else tuple(expect)

        def run(conn: Connection) -> NodeRecord:
            node = self._one(conn, name, for_update=True)  # type: ignore[attr-defined]
            if node.state not in expected:
                raise Conflict(f"{name} is {node.state}, not {' or '.join(expected)}")
            return self._move(conn, node, to, who, fields, utcnow())
        return self._write(run)  # type: ignore[attr-defined]

    def free(self, name: str, *, who: str | None = None) -> NodeRecord:
        """``destroying -> idle``: everything of the node is gone; unlock it and forget the attempt."""
        return self.transition(name, NodeState.DESTROYING, NodeState.IDLE, who=who, **CLEARED_ON_FREE)

    def release(self, name: str, why: str, *, who: str | None = None) -> NodeRecord:
        """``provisioning -> idle``: the launch failed and nothing of it remains; unlock it, keeping ``why``
        as its last error (and in its event)."""
        return self.transition(name, NodeState.PROVISIONING, NodeState.IDLE, who=who,
                               **{**CLEARED_ON_FREE, "last_error": why[:2000]})

    def note_attempt(self, name: str, *, who: str | None = None, **fields: Any) -> NodeRecord:
        """Write what the running attempt made (server id, volumes, DNS) as it happens; one event each."""
        unknown = set(fields) - STATE_FIELDS
        if unknown:
            raise InvalidRequest(f"unknown node field(s): {', '.join(sorted(unknown))}")

        def run(conn: Connection) -> NodeRecord:
            node = self._one(conn, name, for_update=True)  # type: ignore[attr-defined]
            changes = {k: v for k, v in fields.items() if getattr(node, k) != v}
            if not changes:
                return node
            now = utcnow()
            conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **changes, "updated_at": now})
            self._event(conn, [self._event_row(  # type: ignore[attr-defined]
                name, "attempt", who, now, {k: jsonable(getattr(node, k)) for k in changes},
                {k: jsonable(v) for k, v in changes.items()})])
            return replace(node, **changes, updated_at=now)
        return self._write(run)  # type: ignore[attr-defined]

    def lock_to_provision(self, name: str, values: dict[str, Any], *, lease_owner: str | None = None,
                          lease_seconds: float = 0) -> tuple[NodeRecord, bool]:
        """``PUT /nodes/<name>/lock/`` locking a cloud node: paddles' lock rules, then ``idle -> provisioning``.

        Returns the record and whether it must be provisioned (False: paddles' same-owner re-lock).
        """
        def run(conn: Connection) -> tuple[NodeRecord, bool]:
            node = self._one(conn, name, for_update=True, missing="node not found")  # type: ignore[attr-defined]
            check_lock_change(node, values)
            if node.locked:
                return node, False  # check_lock_change let it through: the same owner and description
            if not LOCK.allows(node):
                why = "down" if not node.up else node.state
                raise Forbidden(f"Cannot lock {name}: it is {why}")
            now = utcnow()
            changes, _ = plan_changes(node, values, now)
            fields = {k: v for k, v in changes.items() if k in STATE_FIELDS}
            fields.update(_lease(lease_owner, lease_seconds, now))
            # One row: the move to provisioning carries the lock's fields (locked, locked_by, description).
            return self._move(conn, node, NodeState.PROVISIONING, values.get("locked_by"), fields, now), True
        return self._write(run)  # type: ignore[attr-defined]

    def begin_destroy(self, names: Sequence[str], locked_by: str, description: str | None = None, *,
                      lease_owner: str | None = None, lease_seconds: float = 0
                      ) -> tuple[list[NodeRecord], list[NodeRecord]]:
        """An owner's unlock of cloud nodes, all or none: paddles' unlock rules for every name, then
        ``ready|destroy-failed -> destroying`` (still locked). Nodes never provisioned (``idle``) are
        unlocked at once. Returns (nodes to destroy, nodes unlocked)."""
        values = unlock_values(locked_by, description)
        wanted = sorted({fold_name(n) for n in names})

        def run(conn: Connection) -> tuple[list[NodeRecord], list[NodeRecord]]:
            found = self._all_named(conn, wanted)  # type: ignore[attr-defined]
            for node in found:
                try:
                    check_lock_change(node, values)
                    if node.state not in UNLOCK.states:  # not at rest: its unlock is a destroy
                        check_destroyable(node)
                except StoreError as exc:
                    raise type(exc)(exc.message if node.name in exc.message else f"{exc.message}: {node.name}") from None
            now = utcnow()
            destroy, unlocked = [], []
            for node in found:
                if node.state in UNLOCK.states:
                    changes, action = plan_changes(node, values, now)
                    conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **changes, "updated_at": now})
                    self._event(conn, [self._event_row(node.name, action, locked_by, now,  # type: ignore[attr-defined]
                                                       {k: jsonable(getattr(node, k)) for k in changes},
                                                       {k: jsonable(v) for k, v in changes.items()})])
                    unlocked.append(replace(node, **changes, updated_at=now))
                else:
                    destroy.append(self._move(conn, node, NodeState.DESTROYING, locked_by,
                                              {"last_error": None, **_lease(lease_owner, lease_seconds, now)}, now))
            return destroy, unlocked
        return self._write(run)  # type: ignore[attr-defined]

    def retake(self, name: str, expect: str, to: str | None, *, lease_owner: str, lease_seconds: float,
               who: str | None = None, gone: str | None = None, **fields: Any) -> NodeRecord:
        """Take the lease of a node in ``expect`` whose lease is free or expired (a dead process's work)
        and move it to ``to`` (None: stay, only the lease changes hands). ``gone``: an owner the caller knows
        is dead, whose lease is taken even before it expires. Conflict when it is not ours to take."""
        def run(conn: Connection) -> NodeRecord:
            node = self._one(conn, name, for_update=True)  # type: ignore[attr-defined]
            now = utcnow()
            if node.state != expect:
                raise Conflict(f"{name} is {node.state}, not {expect}")
            if node.lease_owner not in (None, lease_owner, gone) and node.lease_expires and node.lease_expires > now:
                raise Conflict(f"{name} is being worked on by {node.lease_owner}")
            lease = _lease(lease_owner, lease_seconds, now)
            if to is not None:
                return self._move(conn, node, to, who, {**fields, **lease}, now)
            conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **lease, "updated_at": now})
            self._event(conn, [self._event_row(  # type: ignore[attr-defined]
                name, "lease", who, now, {"lease_owner": node.lease_owner}, {"lease_owner": lease_owner})])
            return replace(node, **lease, updated_at=now)
        return self._write(run)  # type: ignore[attr-defined]


    def force_take(self, name: str, *, lease_owner: str, lease_seconds: float, who: str) -> NodeRecord:
        """An admin's override, whoever holds the node: ``provisioning``, ``ready`` and ``destroy-failed`` move
        to ``destroying``, and ``destroying`` changes hands, under ``lease_owner``'s lease (the old holder's
        heartbeat then stops its create); ``idle`` stays as it is. One ``force-unlock`` event naming ``who``."""
        def run(conn: Connection) -> NodeRecord:
            node = self._one(conn, name, for_update=True)  # type: ignore[attr-defined]
            now = utcnow()
            lease = _lease(lease_owner, lease_seconds, now)
            if node.state in (NodeState.PROVISIONING, NodeState.READY, NodeState.DESTROY_FAILED):
                return self._move(conn, node, NodeState.DESTROYING, who,
                                  {"last_error": f"force-unlocked by {who}", **lease}, now, action="force-unlock")
            if node.state != NodeState.DESTROYING:
                return node
            conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **lease, "updated_at": now})
            self._event(conn, [self._event_row(  # type: ignore[attr-defined]
                name, "force-unlock", who, now, {"lease_owner": node.lease_owner}, {"lease_owner": lease_owner})])
            return replace(node, **lease, updated_at=now)
        return self._write(run)  # type: ignore[attr-defined]

    def force_clear(self, name: str, *, who: str) -> NodeRecord:
        """An admin's unlock of an ``idle`` node (its destroy by name is done): the lock's fields are cleared."""
        def run(conn: Connection) -> NodeRecord:
            node = self._one(conn, name, for_update=True)  # type: ignore[attr-defined]
            if node.state != NodeState.IDLE:
                raise Conflict(f"{name} is {node.state}, not idle")
            now = utcnow()
            changes = {k: v for k, v in CLEARED_ON_FREE.items() if getattr(node, k) != v}
            if not changes:
                return node
            conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **changes, "updated_at": now})
            self._event(conn, [self._event_row(  # type: ignore[attr-defined]
                name, "force-unlock", who, now, {k: jsonable(getattr(node, k)) for k in changes},
                {k: jsonable(v) for k, v in changes.items()})])
            return replace(node, **changes, updated_at=now)
        return self._write(run)  # type: ignore[attr-defined]


def _lease(owner: str | None, seconds: float, now: datetime) -> dict[str, Any]:
    if owner is None:
        return {}
    return {"lease_owner": owner, "lease_expires": now + timedelta(seconds=seconds)}


class StageLog:
    """Stage events of a node (lab service progress), kept in the node's event trail."""

    def record_stage(self, name: str, stage: str, status: str, attempt: int = 1, message: str = "", *,
                     who: str | None = None, console: str = "") -> None:
        """Append ``stage status`` (with the attempt, any error and a failed boot's console log) to ``name``'s
        events; the row is unchanged."""
        new: dict[str, Any] = {"stage": stage, "status": status, "attempt": attempt}
        if message:
            new["error"] = message
        if console:
            new["console"] = console

        def run(conn: Connection) -> None:
            self._event(conn, [self._event_row(name, "stage", who, utcnow(), None, new)])  # type: ignore[attr-defined]
        self._write(run)  # type: ignore[attr-defined]

    def renew_leases(self, owner: str, seconds: float) -> int:
        """Extend every lease ``owner`` holds (its heartbeat); returns how many rows it holds."""
        from sqlalchemy import update

        from lablease.store.models import nodes

        def run(conn: Connection) -> int:
            now = utcnow()
            return conn.execute(update(nodes).where(nodes.c.lease_owner == owner).values(
                lease_expires=now + timedelta(seconds=seconds))).rowcount
        return self._write(run)  # type: ignore[attr-defined]
