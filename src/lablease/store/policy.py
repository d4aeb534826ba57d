"""A lock's terms in the store: its expiry, its warning and its hold, each change one transaction.

``LockTerms`` works on a NodeStore's rows (its ``_write``, ``_one``, ``_move`` and ``_event``): every change
locks the row, checks the owner (as paddles' unlock does: the caller's ``locked_by`` must be the lock's) and
the lab's rule (a ``check`` the caller passes, run under the row lock, so a rule never acts on a row another
process changed since it looked), writes the columns and one event. The rules themselves are the lab's
(lab/expiry.py); the store knows none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from lablease.store import queries as q
from lablease.store.errors import Conflict, Forbidden, InvalidRequest
from lablease.store.lifecycle import NodeState
from lablease.store.nodes import NodeStore
from lablease.store.records import NodeRecord, jsonable, utcnow

# A rule's verdict on a row: None lets the change through, a text refuses it (and says why).
Check = Callable[[NodeRecord, datetime], "str | None"]


class LockTerms:
    """Expiry, warning and hold of locked cloud nodes in ``store``."""

    def __init__(self, store: NodeStore) -> None:
        self.store = store

    def _change(self, conn: Connection, node: NodeRecord, action: str, who: str | None,
                values: dict[str, Any], now: datetime) -> NodeRecord:
        changes = {k: v for k, v in values.items() if getattr(node, k) != v}
        if not changes:
            return node
        conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **changes, "updated_at": now})
        self.store._event(conn, [self.store._event_row(
            node.name, action, who, now, {k: jsonable(getattr(node, k)) for k in changes},
            {k: jsonable(v) for k, v in changes.items()})])
        return replace(node, **changes, updated_at=now)

    def begin(self, names: Sequence[str], expires: Callable[[NodeRecord], datetime | None]) -> list[NodeRecord]:
        """Set the terms of nodes just locked: ``expires(node)`` (None: never), no warning yet, no hold.
        No event: the lock's own event says who locked them, the row says until when."""
        def run(conn: Connection) -> list[NodeRecord]:
            now, out = utcnow(), []
            for name in sorted(names):
                node = self.store._one(conn, name, for_update=True)
                values = {"expires_at": expires(node), "expiry_warned": False, "hold_until": None,
                          "hold_reason": None}
                conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **values, "updated_at": now})
                out.append(replace(node, **values, updated_at=now))
            return out
        return self.store._write(run)

    def owned_change(self, name: str, locked_by: str, action: str, values: Callable[[NodeRecord, datetime], dict],
                     check: Check) -> NodeRecord:
        """An owner's change of its lock's terms (extend, hold, release): 403 unless ``locked_by`` holds the node,
        400 with ``check``'s text when the rule refuses it; else the columns ``values`` gives, and one event."""
        if not locked_by:
            raise InvalidRequest("locked_by: say who you are (the lock's owner)")

        def run(conn: Connection) -> NodeRecord:
            node = self.store._one(conn, name, for_update=True)
            if not node.locked:
                raise Forbidden(f"Cannot {action} {node.name}: it is not locked")
            if node.locked_by != locked_by:
                raise Forbidden(f"Cannot {action} {node.name}: it is locked by {node.locked_by}, not {locked_by}; "
                                "only the lock's owner may")
            now = utcnow()
            refused = check(node, now)
            if refused:
                raise InvalidRequest(refused)
            return self._change(conn, node, action, locked_by, values(node, now), now)
        return self.store._write(run)

    def warn(self, name: str, check: Check, message: str) -> NodeRecord | None:
        """Write the lock's one ``expiring`` event (``message`` says when and by which rule), if ``check`` still
        finds it due and nobody warned yet; None when not (another process did, or the lock changed)."""
        def run(conn: Connection) -> NodeRecord | None:
            node = self.store._one(conn, name, for_update=True)
            now = utcnow()
            if node.expiry_warned or check(node, now):
                return None
            after = replace(node, expiry_warned=True, updated_at=now)
            conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, "expiry_warned": True, "updated_at": now})
            self.store._event(conn, [self.store._event_row(
                name, "expiring", "expiry", now, {"expiry_warned": False},
                {"expiry_warned": True, "expires_at": jsonable(node.expires_at), "message": message})])
            return after
        return self.store._write(run)

    def begin_expiry(self, name: str, check: Check, reason: str, *, lease_owner: str,
                     lease_seconds: float) -> NodeRecord:
        """``ready -> destroying`` of an expired lock (still locked, by the same owner), under this process's
        lease, ``reason`` (naming the rule) as its last error and in its event. Conflict when ``check`` finds it
        no longer due (extended, held, unlocked, another process took it)."""
        def run(conn: Connection) -> NodeRecord:
            node = self.store._one(conn, name, for_update=True)
            now = utcnow()
            refused = node.state != NodeState.READY and f"{name} is {node.state}" or check(node, now)
            if refused:
                raise Conflict(f"not expiring {name}: {refused}")
            fields = {"last_error": reason[:2000], "lease_owner": lease_owner,
                      "lease_expires": now + timedelta(seconds=lease_seconds)}
            return self.store._move(conn, node, NodeState.DESTROYING, "expiry", fields, now)
        return self.store._write(run)
