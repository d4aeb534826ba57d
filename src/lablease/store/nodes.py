"""NodeStore: the node inventory and its locks, transactional on SQLite and PostgreSQL.

Every change runs in one write transaction (BEGIN IMMEDIATE on SQLite; row locks on
PostgreSQL), is retried on transient errors, and writes an event (who, when, old -> new).
The lock API and the lab service both use this class; neither touches tables directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from lablease.store.engine import Engines, make_engines
from lablease.store.errors import Forbidden, InvalidRequest, NotFound, Unavailable
from lablease.store.migrate import migrate
from lablease.store.models import STATES, node_events, nodes
from lablease.store.records import COLUMNS, NodeEventRecord, NodeRecord, jsonable, utcnow
from lablease.store.retry import run_with_retry
from lablease.store.rules import UPDATABLE, plan_changes

log = logging.getLogger(__name__)
T = TypeVar("T")
_UNSET: Any = object()
_COLS = [nodes.c[k] for k in COLUMNS]


@dataclass(frozen=True)
class NodeFilter:
    """Filters of ``GET /nodes/``; ``machine_type`` may be ``a|b``; ``count`` limits the rows."""

    locked: bool | None = None
    machine_type: str | None = None
    os_type: str | None = None
    os_version: str | None = None
    locked_by: str | None = None
    up: bool | None = None
    count: int | None = None


def _machine_type_clause(machine_type: str):
    types = [t for t in machine_type.split("|") if t]
    return nodes.c.machine_type.in_(types) if len(types) > 1 else nodes.c.machine_type == machine_type


class NodeStore:
    """The node inventory. Methods raise lablease.store.errors.* with paddles' messages."""

    def __init__(self, engines: Engines):
        self.engines = engines

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True, pool_size: int = 20) -> "NodeStore":
        """Connect to ``url`` and (by default) bring its schema up to date."""
        engines = make_engines(url, pool_size=pool_size)
        if run_migrations:
            migrate(engines)
        return cls(engines)

    def close(self) -> None:
        self.engines.dispose()

    # -- transactions -------------------------------------------------------------------
    def _write(self, fn: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with self.engines.write.begin() as conn:
                return fn(conn)
        return run_with_retry(attempt)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with self.engines.read.begin() as conn:
                return fn(conn)
        return run_with_retry(attempt)

    # -- loading ------------------------------------------------------------------------
    def _records(self, conn: Connection, stmt) -> list[NodeRecord]:
        records = [NodeRecord.from_row(r) for r in conn.execute(stmt)]
        host_ids = {r.vm_host_id for r in records if r.vm_host_id is not None}
        if host_ids:
            hosts = {
                r.id: NodeRecord.from_row(r)
                for r in conn.execute(select(*_COLS).where(nodes.c.id.in_(host_ids)))
            }
            for r in records:
                r.vm_host = hosts.get(r.vm_host_id)
        return records

    def _one(self, conn: Connection, name: str, *, for_update: bool = False,
             missing: str = "node not found") -> NodeRecord:
        stmt = select(*_COLS).where(nodes.c.name == name)
        if for_update:
            stmt = stmt.with_for_update()
        found = self._records(conn, stmt)
        if not found:
            raise NotFound(missing)
        return found[0]

    def _host_id(self, conn: Connection, host: str | None) -> int | None:
        if host is None:
            return None
        hid = conn.execute(select(nodes.c.id).where(nodes.c.name == host)).scalar()
        if hid is None:
            raise InvalidRequest(f"vm_host: no node named {host!r}; create the host node first")
        return hid

    # -- writing helpers ----------------------------------------------------------------
    @staticmethod
    def _event(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.execute(insert(node_events), list(rows))

    @staticmethod
    def _event_row(name: str, action: str, who: str | None, at, old: dict | None, new: dict | None) -> dict:
        return {"node": name, "action": action, "who": who, "at": at, "old": old, "new": new}

    def _apply(self, conn: Connection, node: NodeRecord, values: dict[str, Any], who: str | None) -> str:
        """Check and write ``values`` on ``node`` (locked by the caller); return the action."""
        values = dict(values)
        if "vm_host" in values:
            values["vm_host_id"] = self._host_id(conn, values.pop("vm_host"))
        now = utcnow()
        changes, action = plan_changes(node, values, now)
        if changes:
            conn.execute(update(nodes).where(nodes.c.id == node.id).values(**changes, updated_at=now))
            old = {k: jsonable(getattr(node, k)) for k in changes}
            new = {k: jsonable(v) for k, v in changes.items()}
            actor = values.get("locked_by") or who or node.locked_by
            self._event(conn, [self._event_row(node.name, action, actor, now, old, new)])
        return action

    # -- reading ------------------------------------------------------------------------
    def get(self, name: str) -> NodeRecord:
        """The node called ``name``; NotFound("node not found") otherwise."""
        return self._read(lambda conn: self._one(conn, name))

    def list(self, flt: NodeFilter = NodeFilter()) -> list[NodeRecord]:
        """Nodes matching ``flt``, in name order (paddles gives no order; a stable one helps)."""
        stmt = select(*_COLS).order_by(nodes.c.name)
        if flt.locked is not None:
            stmt = stmt.where(nodes.c.locked == flt.locked)
        if flt.up is not None:
            stmt = stmt.where(nodes.c.up == flt.up)
        if flt.machine_type:
            stmt = stmt.where(_machine_type_clause(flt.machine_type))
        for key in ("os_type", "os_version", "locked_by"):
            value = getattr(flt, key)
            if value:
                stmt = stmt.where(nodes.c[key] == value)
        if flt.count is not None:
            stmt = stmt.limit(flt.count)
        return self._read(lambda conn: self._records(conn, stmt))

    def machine_types(self) -> list[str]:
        """Sorted distinct non-null machine types."""
        stmt = select(nodes.c.machine_type).distinct().where(nodes.c.machine_type.is_not(None))
        return sorted(self._read(lambda conn: list(conn.execute(stmt).scalars())))

    def events(self, name: str, limit: int | None = None) -> list[NodeEventRecord]:
        """The audit trail of ``name``, oldest first; NotFound when there is neither node nor trail."""
        def run(conn: Connection) -> list[NodeEventRecord]:
            stmt = select(node_events).where(node_events.c.node == name).order_by(node_events.c.id)
            if limit is not None:
                stmt = stmt.limit(limit)
            rows = [NodeEventRecord(**r._mapping) for r in conn.execute(stmt)]
            if not rows and conn.execute(select(nodes.c.id).where(nodes.c.name == name)).first() is None:
                raise NotFound("node not found")
            return rows
        return self._read(run)

    # -- inventory ----------------------------------------------------------------------
    def create(self, name: str, values: dict[str, Any] | None = None, who: str | None = None) -> NodeRecord:
        """Create ``name``, then apply ``values`` as an update (a node may be created locked)."""
        if not name:
            raise InvalidRequest("could not find required key: 'name'")
        values = {k: v for k, v in (values or {}).items() if k != "name"}

        def run(conn: Connection) -> NodeRecord:
            if conn.execute(select(nodes.c.id).where(nodes.c.name == name)).first() is not None:
                raise InvalidRequest(f"Node with name {name} already exists")
            now = utcnow()
            try:
                conn.execute(insert(nodes).values(
                    name=name, is_vm=False, locked=False, state="idle", created_at=now, updated_at=now))
            except IntegrityError:
                raise InvalidRequest(f"Node with name {name} already exists") from None
            self._event(conn, [self._event_row(name, "create", who, now, None, {"name": name})])
            node = self._one(conn, name)
            if values:
                self._apply(conn, node, values, who)
            return self._one(conn, name)
        return self._write(run)

    def delete(self, name: str, who: str | None = None) -> None:
        """Delete ``name``; its events stay; VM guests lose their host link."""
        def run(conn: Connection) -> None:
            node = self._one(conn, name, for_update=True)
            conn.execute(delete(nodes).where(nodes.c.id == node.id))
            old = {k: jsonable(v) for k, v in node.to_json().items() if k != "vm_host"}
            self._event(conn, [self._event_row(name, "delete", who, utcnow(), old, None)])
        self._write(run)

    def update_values(self, name: str, values: dict[str, Any], who: str | None = None,
                      missing: str = "attempted to update a non-existent node") -> NodeRecord:
        """Apply paddles update ``values`` (unknown keys ignored) under the lock rules."""
        values = {k: v for k, v in values.items() if k in UPDATABLE or k in ("locked", "vm_host")}

        def run(conn: Connection) -> NodeRecord:
            node = self._one(conn, name, for_update=True, missing=missing)
            self._apply(conn, node, values, who)
            return self._one(conn, name)
        return self._write(run)

    def update(self, name: str, who: str | None = None, **fields: Any) -> NodeRecord:
        """Python API: change fields of ``name``; unknown field names are an error here."""
        unknown = set(fields) - UPDATABLE - {"vm_host"}
        if unknown:
            raise InvalidRequest(f"unknown node field(s): {', '.join(sorted(unknown))}")
        return self.update_values(name, fields, who=who)

    def lock(self, name: str, values: dict[str, Any]) -> NodeRecord:
        """``PUT /nodes/<name>/lock/``: lock, unlock, or (``locked`` absent) apply the other fields."""
        return self.update_values(name, values, missing="node not found")

    def set_provisioning(self, name: str, *, state: str = _UNSET, cloud_server_id: str | None = _UNSET,
                         addresses: Iterable[str] | None = _UNSET, last_error: str | None = _UNSET,
                         who: str | None = None) -> NodeRecord:
        """Record provisioning progress of ``name`` (lab service); writes a ``provision`` event."""
        changes: dict[str, Any] = {}
        if state is not _UNSET:
            if state not in STATES:
                raise InvalidRequest(f"state: must be one of {', '.join(STATES)}")
            changes["state"] = state
        if cloud_server_id is not _UNSET:
            changes["cloud_server_id"] = cloud_server_id
        if addresses is not _UNSET:
            changes["addresses"] = list(addresses or [])
        if last_error is not _UNSET:
            changes["last_error"] = last_error

        def run(conn: Connection) -> NodeRecord:
            node = self._one(conn, name, for_update=True)
            diff = {k: v for k, v in changes.items() if getattr(node, k) != v}
            if diff:
                now = utcnow()
                conn.execute(update(nodes).where(nodes.c.id == node.id).values(**diff, updated_at=now))
                old = {k: getattr(node, k) for k in diff}
                self._event(conn, [self._event_row(name, "provision", who, now, old, diff)])
            return self._one(conn, name)
        return self._write(run)

    # -- locking many ---------------------------------------------------------------------
    def lock_many(self, count: int, machine_type: str, locked_by: str, description: str | None,
                  os_type: str | None = None, os_version: str | None = None,
                  arch: str | None = None) -> list[NodeRecord]:
        """Lock ``count`` free, up nodes of ``machine_type`` for ``locked_by``: all or none.

        Nodes are taken in name order. Unavailable("only N nodes available") when too few.
        """
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidRequest("count must be a positive integer")
        if not locked_by:
            raise InvalidRequest("locked_by: must not be empty")
        cond = [_machine_type_clause(machine_type), nodes.c.up.is_(True), nodes.c.locked.is_(False)]
        if os_type:
            cond.append(nodes.c.os_type == os_type)
        if os_version:
            cond.append(nodes.c.os_version == str(os_version))
        if arch:
            cond.append(nodes.c.arch == arch)
        base = select(nodes.c.id, nodes.c.name, nodes.c.description).where(*cond).order_by(nodes.c.name)
        postgres = self.engines.dialect == "postgresql"

        def run(conn: Connection) -> list[NodeRecord]:
            rows = conn.execute(base.limit(count).with_for_update(skip_locked=True)).all()
            if len(rows) < count and postgres:
                # Rows skipped because another transaction holds them may yet be free (that
                # transaction may roll back): wait for them before answering "too few".
                rows = conn.execute(base.with_for_update()).all()[:count]
            if len(rows) < count:
                raise Unavailable(f"only {len(rows)} nodes available")
            now = utcnow()
            ids = [r.id for r in rows]
            result = conn.execute(
                update(nodes).where(nodes.c.id.in_(ids), nodes.c.locked.is_(False)).values(
                    locked=True, locked_by=locked_by, locked_since=now, description=description, updated_at=now))
            if result.rowcount != len(ids):  # cannot happen under the row/database lock; be sure
                raise Forbidden("Cannot lock an already-locked node")
            self._event(conn, [
                self._event_row(r.name, "lock", locked_by, now,
                                {"locked": False, "locked_by": None, "description": r.description},
                                {"locked": True, "locked_by": locked_by, "description": description})
                for r in rows])
            return self._records(conn, select(*_COLS).where(nodes.c.id.in_(ids)).order_by(nodes.c.name))
        return self._write(run)

    def unlock_many(self, names: Sequence[str], locked_by: str, description: str | None = None) -> list[NodeRecord]:
        """Unlock all of ``names`` held by ``locked_by``, or none of them (atomic)."""
        if not locked_by:
            raise InvalidRequest("Cannot unlock without specifying locked_by")
        wanted = sorted(set(names))

        def run(conn: Connection) -> list[NodeRecord]:
            found = self._records(conn, select(*_COLS).where(nodes.c.name.in_(wanted))
                                  .order_by(nodes.c.name).with_for_update())
            if len(found) != len(wanted):
                raise InvalidRequest("Could not find all nodes!")
            values = {"locked": False, "locked_by": locked_by}
            if description:
                values["description"] = description
            for node in found:
                try:
                    self._apply(conn, node, values, locked_by)
                except Forbidden as exc:
                    raise Forbidden(f"{exc.message}: {node.name}") from None
            by_name = {n.name: n for n in self._records(conn, select(*_COLS).where(nodes.c.name.in_(wanted)))}
            return [by_name[n] for n in names if n in by_name]
        return self._write(run)
