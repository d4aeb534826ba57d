"""NodeStore: the node inventory and its locks, transactional on SQLite and PostgreSQL.

Every change runs in one write transaction (BEGIN IMMEDIATE on SQLite; row locks on
PostgreSQL), is retried on transient errors, and writes an event (who, when, old -> new).
The lock API and the lab service both use this class; neither touches tables directly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from lablease.store import pg_fast
from lablease.store import queries as q

from lablease.store.engine import PG_LOCK_TIMEOUT_MS, Engines, make_engines
from lablease.store.errors import Forbidden, InvalidRequest, NotFound, Unavailable
from lablease.store.migrate import migrate
from lablease.store.models import STATES, nodes
from lablease.store.records import NodeEventRecord, NodeRecord, jsonable, parse_time, utcnow
from lablease.store.retry import run_with_retry
from lablease.store.rules import UPDATABLE, plan_changes

log = logging.getLogger(__name__)
T = TypeVar("T")
_UNSET: Any = object()


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
        # SQLite allows one writer: threads of this process queue here instead of polling
        # SQLite's busy handler (which sleeps up to 100 ms between tries).
        self._write_mutex = threading.Lock() if engines.dialect == "sqlite" else contextlib.nullcontext()

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True, pool_size: int = 20,
             lock_timeout_ms: int = PG_LOCK_TIMEOUT_MS) -> "NodeStore":
        """Connect to ``url`` and (by default) bring its schema up to date."""
        engines = make_engines(url, pool_size=pool_size, lock_timeout_ms=lock_timeout_ms)
        if run_migrations:
            try:
                migrate(engines)
            except BaseException:
                engines.dispose()  # the caller never gets the store, so nobody else would close its pool
                raise
        return cls(engines)

    def close(self) -> None:
        self.engines.dispose()

    # -- transactions -------------------------------------------------------------------
    def _write(self, fn: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with self._write_mutex, self.engines.write.begin() as conn:
                return fn(conn)
        return run_with_retry(attempt)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        def attempt() -> T:
            with self.engines.read.begin() as conn:
                return fn(conn)
        return run_with_retry(attempt)

    # -- loading ------------------------------------------------------------------------
    @staticmethod
    def _with_hosts(conn: Connection, records: list[NodeRecord]) -> list[NodeRecord]:
        host_ids = {r.vm_host_id for r in records if r.vm_host_id is not None}
        if host_ids:
            hosts = {r.id: NodeRecord.from_row(r) for r in conn.execute(q.BY_IDS, {"ids": list(host_ids)})}
            for r in records:
                r.vm_host = hosts.get(r.vm_host_id)
        return records

    def _records(self, conn: Connection, stmt, params: dict[str, Any] | None = None) -> list[NodeRecord]:
        return self._with_hosts(conn, [NodeRecord.from_row(r) for r in conn.execute(stmt, params or {})])

    def _one(self, conn: Connection, name: str, *, for_update: bool = False,
             missing: str = "node not found") -> NodeRecord:
        found = self._records(conn, q.BY_NAME_FOR_UPDATE if for_update else q.BY_NAME, {"name": name})
        if not found:
            raise NotFound(missing)
        return found[0]

    @staticmethod
    def _host_id(conn: Connection, host: str | None) -> int | None:
        if host is None:
            return None
        hid = conn.execute(q.ID_BY_NAME, {"name": host}).scalar()
        if hid is None:
            raise InvalidRequest(f"vm_host: no node named {host!r}; create the host node first")
        return hid

    # -- writing helpers ----------------------------------------------------------------
    @staticmethod
    def _event(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            conn.execute(q.INSERT_EVENT, list(rows))

    @staticmethod
    def _event_row(name: str, action: str, who: str | None, at, old: dict | None, new: dict | None) -> dict:
        return {"node": name, "action": action, "who": who, "at": at, "old": old, "new": new}

    def _apply(self, conn: Connection, node: NodeRecord, values: dict[str, Any], who: str | None) -> NodeRecord:
        """Check and write ``values`` on ``node`` (row locked by the caller); return the new record."""
        values = dict(values)
        if values.get("locked_since") is not None:
            try:
                values["locked_since"] = parse_time(values["locked_since"])
            except ValueError as exc:
                raise InvalidRequest(f"locked_since: {exc}") from None
        if "vm_host" in values:
            values["vm_host_id"] = self._host_id(conn, values.pop("vm_host"))
        now = utcnow()
        changes, action = plan_changes(node, values, now)
        if not changes:
            return node
        conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **changes, "updated_at": now})
        old = {k: jsonable(getattr(node, k)) for k in changes}
        new = {k: jsonable(v) for k, v in changes.items()}
        actor = values.get("locked_by") or who or node.locked_by
        self._event(conn, [self._event_row(node.name, action, actor, now, old, new)])
        after = replace(node, **changes, updated_at=now)
        if "vm_host_id" in changes:
            after.vm_host = None
            self._with_hosts(conn, [after])
        return after

    # -- reading ------------------------------------------------------------------------
    def get(self, name: str) -> NodeRecord:
        """The node called ``name``; NotFound("node not found") otherwise."""
        return self._read(lambda conn: self._one(conn, name))

    def list(self, flt: NodeFilter = NodeFilter()) -> list[NodeRecord]:
        """Nodes matching ``flt``, in name order (paddles gives no order; a stable one helps)."""
        stmt = q.SELECT.order_by(nodes.c.name)
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
        return sorted(self._read(lambda conn: list(conn.execute(q.MACHINE_TYPES).scalars())))

    def events(self, name: str, limit: int | None = None) -> list[NodeEventRecord]:
        """The audit trail of ``name``, oldest first; NotFound when there is neither node nor trail."""
        def run(conn: Connection) -> list[NodeEventRecord]:
            stmt = q.EVENTS_OF if limit is None else q.EVENTS_OF.limit(limit)
            rows = [NodeEventRecord(**r._mapping) for r in conn.execute(stmt, {"name": name})]
            if not rows and conn.execute(q.ID_BY_NAME, {"name": name}).first() is None:
                raise NotFound("node not found")
            return rows
        return self._read(run)

    # -- inventory ----------------------------------------------------------------------
    def create(self, name: str, values: dict[str, Any] | None = None, who: str | None = None) -> NodeRecord:
        """Create ``name``, then apply ``values`` as an update (a node may be created locked)."""
        if not name:
            raise InvalidRequest("could not find required key: 'name'")
        if "/" in name:
            # /nodes/<name>/ could never address it (not even as %2F): it could not be read or deleted.
            raise InvalidRequest("name: must not contain '/'; use a host name such as node1.example.com")
        values = {k: v for k, v in (values or {}).items() if k != "name"}

        def run(conn: Connection) -> NodeRecord:
            if conn.execute(q.ID_BY_NAME, {"name": name}).first() is not None:
                raise InvalidRequest(f"Node with name {name} already exists")
            now = utcnow()
            try:
                conn.execute(insert(nodes).values(
                    name=name, is_vm=False, locked=False, state="idle", created_at=now, updated_at=now))
            except IntegrityError:
                raise InvalidRequest(f"Node with name {name} already exists") from None
            self._event(conn, [self._event_row(name, "create", who, now, None, {"name": name})])
            node = self._one(conn, name)
            return self._apply(conn, node, values, who) if values else node
        return self._write(run)

    def delete(self, name: str, who: str | None = None) -> None:
        """Delete ``name``; its events stay; VM guests lose their host link."""
        def run(conn: Connection) -> None:
            node = self._one(conn, name, for_update=True)
            conn.execute(delete(nodes).where(nodes.c.id == node.id))
            old = {k: v for k, v in node.to_json().items() if k != "vm_host"}
            self._event(conn, [self._event_row(name, "delete", who, utcnow(), old, None)])
        self._write(run)

    def update_values(self, name: str, values: dict[str, Any], who: str | None = None,
                      missing: str = "attempted to update a non-existent node") -> NodeRecord:
        """Apply paddles update ``values`` (unknown keys ignored) under the lock rules."""
        values = {k: v for k, v in values.items() if k in UPDATABLE or k in ("locked", "vm_host")}

        def run(conn: Connection) -> NodeRecord:
            return self._apply(conn, self._one(conn, name, for_update=True, missing=missing), values, who)
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
            if not diff:
                return node
            now = utcnow()
            conn.execute(q.UPDATE_BY_ID, {"node_id": node.id, **diff, "updated_at": now})
            old = {k: getattr(node, k) for k in diff}
            self._event(conn, [self._event_row(name, "provision", who, now, old, diff)])
            return replace(node, **diff, updated_at=now)
        return self._write(run)

    # -- locking many ---------------------------------------------------------------------
    def lock_many(self, count: int, machine_type: str, locked_by: str, description: str | None,
                  os_type: str | None = None, os_version: str | None = None,
                  arch: str | None = None) -> list[NodeRecord]:
        """Lock ``count`` free, up nodes of ``machine_type`` (``a|b`` for either) for ``locked_by``:
        all or none, in name order. Unavailable("only N nodes available") when too few are free."""
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidRequest("count must be a positive integer")
        if not locked_by:
            raise InvalidRequest("locked_by: must not be empty")
        flags, params = pg_fast.lock_params(count, machine_type, locked_by, description, os_type, os_version, arch)

        postgres = self.engines.dialect == "postgresql"

        def fast() -> list[NodeRecord] | None:
            with self.engines.autocommit.connect() as conn:  # type: ignore[union-attr]
                _available, rows = pg_fast.lock_first_free(conn, flags, params, utcnow())
                if len(rows) < count:
                    return None  # nothing was written
                return self._with_hosts(conn, sorted((NodeRecord.from_row(r) for r in rows), key=lambda r: r.name))

        def careful(conn: Connection) -> list[NodeRecord]:
            # SQLite: we hold the database's write lock, so the first rows read are free for us.
            # PostgreSQL, after the one-statement path found too few: rows it skipped may be held by a
            # transaction that will roll back, so wait for every candidate's row lock, then decide.
            if postgres:
                found = conn.execute(q.lock_candidates(*flags).with_for_update(), params).all()[:count]
            else:
                found = conn.execute(q.first_candidates(*flags), params).all()
            if len(found) < count:
                raise Unavailable(f"only {len(found)} nodes available")
            now = utcnow()
            old = {r.id: r.old_description for r in found}
            rows = conn.execute(q.LOCK_IDS, {**params, "ids": list(old), "p_now": now}).all()
            if len(rows) != count:  # cannot happen under our locks; never hand out a held node
                raise Forbidden("Cannot lock an already-locked node")
            return self._locked(conn, rows, locked_by, description, now, old)

        if postgres and self.engines.autocommit is not None:
            got = run_with_retry(fast)
            if got is not None:
                return got
        return self._write(careful)

    def _locked(self, conn: Connection, rows, locked_by: str, description: str | None, now,  # noqa: ANN001
                old_description: dict[int, str | None] | None = None) -> list[NodeRecord]:
        """Write the lock events of freshly locked ``rows``; return their records in name order."""
        records = sorted((NodeRecord.from_row(r) for r in rows), key=lambda r: r.name)
        olds = old_description or {r.id: r.old_description for r in rows}
        self._event(conn, [
            self._event_row(r.name, "lock", locked_by, now,
                            {"locked": False, "locked_by": None, "description": olds[r.id]},
                            {"locked": True, "locked_by": locked_by, "description": description})
            for r in records])
        return self._with_hosts(conn, records)

    def unlock_many(self, names: Sequence[str], locked_by: str, description: str | None = None) -> list[NodeRecord]:
        """Unlock all of ``names`` held by ``locked_by``, or none of them (atomic)."""
        if not locked_by:
            raise InvalidRequest("Cannot unlock without specifying locked_by")
        wanted = sorted(set(names))
        values: dict[str, Any] = {"locked": False, "locked_by": locked_by}
        if description:
            values["description"] = description

        def run(conn: Connection) -> list[NodeRecord]:
            found = self._records(conn, q.BY_NAMES_FOR_UPDATE, {"names": wanted})
            if len(found) != len(wanted):
                raise InvalidRequest("Could not find all nodes!")
            now = utcnow()
            plans = []
            for node in found:
                try:
                    plans.append((node, *plan_changes(node, values, now)))
                except Forbidden as exc:
                    raise Forbidden(f"{exc.message}: {node.name}") from None
            after: dict[str, NodeRecord] = {}
            groups: dict[tuple, list[int]] = {}
            for node, changes, _action in plans:
                groups.setdefault(tuple(sorted(changes.items())), []).append(node.id)
                after[node.name] = replace(node, **changes, updated_at=now)
            for key, ids in groups.items():
                if key:
                    conn.execute(q.UPDATE_BY_IDS, {"node_ids": ids, **dict(key), "updated_at": now})
            self._event(conn, [
                self._event_row(node.name, action, locked_by, now,
                                {k: jsonable(getattr(node, k)) for k in changes},
                                {k: jsonable(v) for k, v in changes.items()})
                for node, changes, action in plans if changes])
            return [after[n] for n in names if n in after]

        def fast() -> list[NodeRecord] | None:
            with self.engines.autocommit.connect() as conn:  # type: ignore[union-attr]
                rows = pg_fast.unlock_all(conn, wanted, locked_by, description, utcnow())
                if len(rows) != len(wanted):
                    return None  # nothing was written; the transactional path finds the culprit
                by_name = {r.name: r for r in self._with_hosts(conn, [NodeRecord.from_row(r) for r in rows])}
                return [by_name[n] for n in names if n in by_name]

        if self.engines.autocommit is not None and wanted:
            got = run_with_retry(fast)
            if got is not None:
                return got
        return self._write(run)
