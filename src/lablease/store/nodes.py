"""NodeStore: the node inventory and its locks, transactional on SQLite and PostgreSQL.

Every change runs in one write transaction (BEGIN IMMEDIATE on SQLite; row locks on
PostgreSQL), is retried on transient errors, and writes an event (who, when, old -> new).
The lock API and the lab service both use this class; neither touches tables directly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, insert
from sqlalchemy.exc import IntegrityError

from lablease.hostnames import fold_name
from lablease.store import pg_fast
from lablease.store import queries as q
from lablease.store.engine import PG_LOCK_TIMEOUT_MS, Engines, make_engines
from lablease.store.errors import Forbidden, InvalidRequest, NotFound, Shortage, Unavailable
from lablease.store.lifecycle import NodeState
from lablease.store.migrate import migrate
from lablease.store.models import nodes
from lablease.store.records import NodeEventRecord, NodeRecord, jsonable, parse_time, utcnow
from lablease.store.retry import run_with_retry
from lablease.store.rules import UPDATABLE, plan_changes, unlock_values
from lablease.store.pool import WarmNodes
from lablease.store.retention import EventRetention
from lablease.store.states import StageLog, StateMachine

log = logging.getLogger(__name__)
T = TypeVar("T")


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


class NodeStore(StateMachine, StageLog, WarmNodes, EventRetention):
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
        found = self._records(conn, q.BY_NAME_FOR_UPDATE if for_update else q.BY_NAME, {"name": fold_name(name)})
        if not found:
            raise NotFound(missing)
        return found[0]

    def _all_named(self, conn: Connection, wanted: list[str]) -> list[NodeRecord]:
        """Every node of ``wanted`` (sorted names), row-locked; paddles' 400 when one is missing."""
        found = self._records(conn, q.BY_NAMES_FOR_UPDATE, {"names": wanted})
        if len(found) != len(wanted):
            raise InvalidRequest("Could not find all nodes!")
        return found

    @staticmethod
    def _host_id(conn: Connection, host: str | None) -> int | None:
        if host is None:
            return None
        hid = conn.execute(q.ID_BY_NAME, {"name": fold_name(host)}).scalar()
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
        name = fold_name(name)

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
        name = fold_name(name)  # host names are case-insensitive: stored and compared lowered

        def run(conn: Connection) -> NodeRecord:
            if conn.execute(q.ID_BY_NAME, {"name": name}).first() is not None:
                raise InvalidRequest(f"Node with name {name} already exists")
            now = utcnow()
            try:
                conn.execute(insert(nodes).values(
                    name=name, is_vm=False, locked=False, state=NodeState.IDLE.value, created_at=now, updated_at=now))
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
            if node.state != NodeState.IDLE:
                # Its server, volumes or DNS name may exist: deleting the record would orphan them.
                raise Forbidden(f"Cannot delete {name}: it is {node.state}; unlock it first so that "
                                "its cloud resources are destroyed")
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

    # -- locking many ---------------------------------------------------------------------
    def lock_many(self, count: int, machine_type: str, locked_by: str, description: str | None,
                  os_type: str | None = None, os_version: str | None = None,
                  arch: str | None = None, *, provision: bool = False, lease_owner: str | None = None,
                  lease_seconds: float = 0) -> list[NodeRecord]:
        """Lock ``count`` free, up nodes of ``machine_type`` (``a|b`` for either) for ``locked_by``:
        all or none, in name order. Shortage ("only N nodes available") when too few are free.

        ``provision`` (a cloud type, for the lab service): the OS fields say what to create, not
        which records match, and the nodes move ``idle -> provisioning`` in the same transaction.
        """
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise InvalidRequest("count must be a positive integer")
        if not locked_by:
            raise InvalidRequest("locked_by: must not be empty")
        if provision:
            return self._lock_to_provision(count, machine_type, locked_by, description, os_type, os_version, arch,
                                           lease_owner, lease_seconds)
        flags, params = pg_fast.lock_params(count, machine_type, locked_by, description, os_type, os_version, arch)
        postgres = self.engines.dialect == "postgresql"

        def fast() -> list[NodeRecord] | None:
            # Raises only what provably wrote nothing (safe for run_with_retry to repeat); a lost
            # answer is looked up, so ``careful`` below never locks a second set.
            with self.engines.autocommit.connect() as conn:  # type: ignore[union-attr]
                locked = pg_fast.lock_first_free(conn, flags, params, utcnow())
            return locked or None  # the statement locks all ``count`` nodes or none

        def careful(conn: Connection) -> list[NodeRecord]:
            # SQLite: we hold the database's write lock, so the first rows read are free for us.
            # PostgreSQL, after the one-statement path found too few: rows it skipped may be held by a
            # transaction that will roll back, so wait for every candidate's row lock, then decide.
            if postgres:
                found = conn.execute(q.lock_candidates(*flags).with_for_update(), params).all()[:count]
            else:
                found = conn.execute(q.first_candidates(*flags), params).all()
            if len(found) < count:
                raise Shortage(count, len(found))
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

    def _lock_to_provision(self, count: int, machine_type: str, locked_by: str, description: str | None,
                           os_type: str | None, os_version: str | None, arch: str | None,
                           lease_owner: str | None, lease_seconds: float) -> list[NodeRecord]:
        flags, params = pg_fast.lock_params(count, machine_type, locked_by, description)
        postgres = self.engines.dialect == "postgresql"

        def run(conn: Connection) -> list[NodeRecord]:
            stmt = q.lock_candidates(*flags).with_for_update() if postgres else q.first_candidates(*flags)
            found = conn.execute(stmt, params).all()[:count]
            if len(found) < count:
                raise Shortage(count, len(found))
            now = utcnow()
            rows = conn.execute(q.LOCK_IDS_PROVISIONING, {
                **params, "ids": [r.id for r in found], "p_now": now, "p_os_type": os_type,
                "p_os_version": os_version and str(os_version), "p_arch": arch}).all()
            if len(rows) != count:
                raise Forbidden("Cannot lock an already-locked node")
            locked = self._with_hosts(conn, sorted((NodeRecord.from_row(r) for r in rows), key=lambda r: r.name))
            lease = {} if lease_owner is None else {
                "lease_owner": lease_owner, "lease_expires": now + timedelta(seconds=lease_seconds)}
            if lease:
                conn.execute(q.UPDATE_BY_IDS, {"node_ids": [r.id for r in locked], **lease, "updated_at": now})
            old = {r.id: {"state": r.old_state, "locked": False, "locked_by": None, "description": r.old_description}
                   for r in found}  # one row for the lock and its move to provisioning (one write)
            new = {"state": NodeState.PROVISIONING.value, "locked": True, "locked_by": locked_by,
                   "description": description, "os_type": os_type, "os_version": os_version}
            self._event(conn, [self._event_row(r.name, "state", locked_by, now, old[r.id], {**new, "arch": r.arch})
                               for r in locked])
            return [replace(r, **lease) for r in locked]
        return self._write(run)

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
        values = unlock_values(locked_by, description)
        names = [fold_name(n) for n in names]
        wanted = sorted(set(names))

        def run(conn: Connection) -> list[NodeRecord]:
            found = self._all_named(conn, wanted)
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
            # As in lock_many: a lost answer is looked up, never retried (a second run would be a false 403).
            with self.engines.autocommit.connect() as conn:  # type: ignore[union-attr]
                unlocked = pg_fast.unlock_all(conn, wanted, locked_by, description, utcnow())
            if not unlocked:
                return None  # nothing was written; the transactional path finds the culprit
            by_name = {r.name: r for r in unlocked}
            return [by_name[n] for n in names if n in by_name]

        if self.engines.autocommit is not None and wanted:
            got = run_with_retry(fast)
            if got is not None:
                return got
        return self._write(run)
