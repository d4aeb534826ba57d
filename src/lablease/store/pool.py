"""Warm nodes in the store: provisioned, ``ready`` and unlocked, waiting for a lock of their OS.

Mixed into NodeStore. A warm node is not lock-eligible for plain locks (eligibility.LOCK wants
``idle``); only the lab service claims it (eligibility.WARM_CLAIM), for a lock that asks for its OS.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from lablease.store import queries as q
from lablease.store.eligibility import LOCK, WARM_CLAIM
from lablease.store.errors import Conflict, Shortage
from lablease.store.lifecycle import NodeState
from lablease.store.models import nodes
from lablease.store.records import NodeRecord, utcnow

POOL_OWNER = "lablease-warm-pool"  # locked_by of nodes being provisioned for the pool


def _warm(machine_type: str, os_type: str, os_version: str):  # noqa: ANN202
    return and_(nodes.c.machine_type == machine_type, WARM_CLAIM.clause(), nodes.c.os_type == os_type,
                nodes.c.os_version == os_version)


class WarmNodes:
    """Store operations of the warm pool (needs NodeStore's ``_write``, ``_read``, ``_records``, ``_event``)."""

    def count_warm(self, machine_type: str, os_type: str, os_version: str) -> tuple[int, int]:
        """(warm nodes, nodes being provisioned for the pool) of that type and OS."""
        def run(conn: Connection) -> tuple[int, int]:
            warm = len(conn.execute(select(nodes.c.id).where(_warm(machine_type, os_type, os_version))).all())
            coming = len(conn.execute(select(nodes.c.id).where(
                nodes.c.machine_type == machine_type, nodes.c.state == NodeState.PROVISIONING.value,
                nodes.c.locked_by == POOL_OWNER, nodes.c.os_type == os_type,
                nodes.c.os_version == os_version)).all())
            return warm, coming
        return self._read(run)  # type: ignore[attr-defined]

    def claim_warm(self, count: int, machine_type: str, os_type: str, os_version: str, locked_by: str,
                   description: str | None) -> list[NodeRecord]:
        """Lock up to ``count`` warm nodes of that OS for ``locked_by`` (they stay ``ready``).

        Shortage, before anything is claimed, when the warm nodes found plus the idle records a lock may
        take (eligibility.LOCK) are fewer than ``count``: the lock could not be filled, and claiming warm
        nodes only to give them back would cost two writes, two events and an SSH check per warm node at
        every retry of a client that waits for nodes (teuthology's scheduler does).
        """
        postgres = self.engines.dialect == "postgresql"  # type: ignore[attr-defined]

        def run(conn: Connection) -> list[NodeRecord]:
            stmt = q.SELECT.where(_warm(machine_type, os_type, os_version)).order_by(nodes.c.name).limit(count)
            if postgres:
                stmt = stmt.with_for_update(skip_locked=True)  # another claim may hold some: take others
            found = self._records(conn, stmt)  # type: ignore[attr-defined]
            if len(found) < count:
                idle = conn.execute(select(func.count()).select_from(nodes).where(
                    nodes.c.machine_type == machine_type, LOCK.clause())).scalar_one()
                if len(found) + idle < count:
                    raise Shortage(count, len(found) + idle)
            now = utcnow()
            claimed = []
            for node in found:
                # Checked again as it is written: a claim never takes a node the rule no longer allows.
                done = conn.execute(update(nodes).where(nodes.c.id == node.id, WARM_CLAIM.clause()).values(
                    locked=True, locked_by=locked_by, locked_since=now, description=description, updated_at=now))
                if done.rowcount != 1:
                    continue
                self._event(conn, [self._event_row(  # type: ignore[attr-defined]
                    node.name, "lock", locked_by, now, {"locked": False, "description": node.description},
                    {"locked": True, "locked_by": locked_by, "description": description, "warm": True})])
                claimed.append(replace(node, locked=True, locked_by=locked_by, locked_since=now,
                                       description=description, updated_at=now))
            return claimed
        return self._write(run)  # type: ignore[attr-defined]

    def to_pool(self, name: str, *, who: str = "lablease") -> NodeRecord:
        """A ready node goes (back) to the warm pool: unlocked, still ``ready``, its server kept."""
        def run(conn: Connection) -> NodeRecord:
            node = self._one(conn, name, for_update=True)  # type: ignore[attr-defined]
            if node.state != NodeState.READY or not node.locked:
                raise Conflict(f"{name} is {node.state} and {'locked' if node.locked else 'free'}; "
                               "only a locked ready node can go to the warm pool")
            now = utcnow()
            values: dict[str, Any] = {"locked": False, "locked_by": None, "locked_since": None,
                                      "description": None, "lease_owner": None, "lease_expires": None}
            conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **values, "updated_at": now})
            self._event(conn, [self._event_row(  # type: ignore[attr-defined]
                name, "pool", who, now, {"locked_by": node.locked_by}, {"locked": False, "warm": True})])
            return replace(node, **values, updated_at=now)
        return self._write(run)  # type: ignore[attr-defined]


    def take_warm(self, name: str, reason: str, *, who: str = "warm-pool", lease_owner: str | None = None,
                  lease_seconds: float = 0) -> NodeRecord:
        """Take an unlocked ``ready`` node out of the pool to destroy it (surplus, or it failed its check):
        ``ready -> destroying``, locked by the pool, ``reason`` as its last error. Conflict when a lock
        claimed it first (or it is no longer warm): that lock's own check decides about it."""
        def run(conn: Connection) -> NodeRecord:
            node = self._one(conn, name, for_update=True)  # type: ignore[attr-defined]
            if node.state != NodeState.READY or node.locked:
                raise Conflict(f"{name} is {node.state} and {'locked' if node.locked else 'free'}, no longer warm")
            now = utcnow()
            fields: dict[str, Any] = {"locked": True, "locked_by": POOL_OWNER, "locked_since": now,
                                      "last_error": reason}
            if lease_owner is not None:  # a process that dies mid-destroy leaves it to the reconciler
                fields.update(lease_owner=lease_owner, lease_expires=now + timedelta(seconds=lease_seconds))
            return self._move(conn, node, NodeState.DESTROYING, who, fields, now)  # type: ignore[attr-defined]
        return self._write(run)  # type: ignore[attr-defined]
