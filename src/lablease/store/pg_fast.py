"""PostgreSQL fast paths: lock_many and unlock_many as one autocommit statement each.

Each statement picks, checks, updates and writes its events at once (data-modifying CTEs), so a
lock costs one round trip instead of BEGIN/SELECT/UPDATE/INSERT/COMMIT. Both are all-or-nothing
inside the statement: when not every row qualifies, nothing is written and the caller falls
back to the transactional path, which waits for held rows and produces paddles' exact errors.
A statement whose answer is lost (connection dropped) may have committed, so it is never handed
on or run again: what it wrote is looked up (``written_by_lost_statement``) and answered.

The statements are plain psycopg SQL (``%(name)s`` parameters), run by the store through
SQLAlchemy's connection (``exec_driver_sql``) and by the lock API's async lane
(``lablease.store.pg_async``) straight on psycopg; psycopg prepares them server-side after a few
uses on a connection, so PostgreSQL stops parsing and planning them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import URL, Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from lablease.store.engine import PG_LOCK_TIMEOUT_MS, pg_lock_timeout_options
from lablease.store.errors import Unavailable
from lablease.store.records import COLUMNS, NodeRecord
from lablease.store.eligibility import LOCK, UNLOCK

log = logging.getLogger(__name__)

_RETURN = ", ".join(f"nodes.{c}" for c in COLUMNS)
_OUT = ", ".join(f"upd.{c}" for c in COLUMNS)
_TIME = "'YYYY-MM-DD HH24:MI:SS.US'"
Flags = tuple[bool, bool, bool]  # os_type, os_version, arch given

HOSTS_SQL = f"SELECT {', '.join(COLUMNS)} FROM nodes WHERE id = ANY(%(ids)s::integer[])"

# After a lost answer, what the statement wrote is looked up only once its session has ended (it
# might still be running and commit later). PostgreSQL 14+ (pg_terminate_backend with a timeout);
# a NULL answer means that session was already gone.
_END_SESSION_MS = 5000
END_SESSION_SQL = """
SELECT bool_and(pg_terminate_backend(pid, %(wait_ms)s::bigint)) AS ended FROM pg_stat_activity
WHERE pid = %(pid)s::integer AND pid <> pg_backend_pid()
"""
# What a lock statement wrote: it set locked_by and locked_since = p_now (microseconds, per request).
LOCKED_BY_REQUEST_SQL = f"""SELECT {', '.join(COLUMNS)} FROM nodes
WHERE locked_by = %(p_locked_by)s::text AND locked_since = %(p_now)s::timestamp ORDER BY name"""
# What an unlock statement wrote: its events (locked_by/locked_since are cleared, so they cannot tell).
UNLOCKED_BY_REQUEST_SQL = f"""SELECT {', '.join(COLUMNS)} FROM nodes
WHERE name = ANY(%(names)s::text[]) AND EXISTS (
    SELECT 1 FROM node_events e WHERE e.node = nodes.name AND e.action = 'unlock'
      AND e.who = %(by)s::text AND e.at = %(now)s::timestamp)
ORDER BY name"""


def lock_params(count: int, machine_type: str, locked_by: str, description: str | None,
                os_type: str | None = None, os_version: str | None = None,
                arch: str | None = None) -> tuple[Flags, dict[str, Any]]:
    """The statement variant (which optional filters) and parameters of a lock_many call."""
    flags = (bool(os_type), bool(os_version), bool(arch))
    params: dict[str, Any] = {"types": [t for t in machine_type.split("|") if t] or [machine_type],
                              "count": count, "p_locked_by": locked_by, "p_description": description}
    params.update({k: v for k, v in (("c_os_type", os_type), ("c_os_version", os_version and str(os_version)),
                                      ("c_arch", arch)) if v})
    return flags, params


@lru_cache(maxsize=16)
def lock_sql(os_type: bool, os_version: bool, arch: bool) -> str:
    """Lock the first ``count`` free candidates in name order, or nothing if fewer are free."""
    extra = "".join([
        " AND os_type = %(c_os_type)s::text" if os_type else "",
        " AND os_version = %(c_os_version)s::text" if os_version else "",
        " AND arch = %(c_arch)s::text" if arch else "",
    ])
    return f"""
WITH picked AS (
    SELECT id, description AS old_description FROM nodes
    WHERE machine_type = ANY(%(types)s::text[]) AND {LOCK.sql()}{extra}
    ORDER BY name LIMIT %(count)s::integer FOR UPDATE SKIP LOCKED
), enough AS (SELECT count(*) AS n FROM picked),
upd AS (
    UPDATE nodes SET locked = TRUE, locked_by = %(p_locked_by)s::text, locked_since = %(p_now)s::timestamp,
        description = %(p_description)s::text, updated_at = %(p_now)s::timestamp
    FROM picked WHERE nodes.id = picked.id AND (SELECT n FROM enough) = %(count)s::integer
    RETURNING {_RETURN}, picked.old_description
), ev AS (
    INSERT INTO node_events (node, action, who, at, old, new)
    SELECT upd.name, 'lock', %(p_locked_by)s::text, %(p_now)s::timestamp,
        json_build_object('locked', FALSE, 'locked_by', NULL, 'description', upd.old_description),
        json_build_object('locked', TRUE, 'locked_by', %(p_locked_by)s::text,
                          'description', %(p_description)s::text)
    FROM upd
)
SELECT (SELECT n FROM enough) AS available, {_OUT}, upd.old_description
FROM (SELECT 1) AS one LEFT JOIN upd ON TRUE
"""


UNLOCK_SQL = f"""
WITH cur AS (
    SELECT id, locked, locked_by, locked_since, description, state, up FROM nodes
    WHERE name = ANY(%(names)s::text[]) ORDER BY name FOR UPDATE
), ok AS (
    SELECT count(*) AS n FROM cur
    WHERE {UNLOCK.sql("%(by)s::text")}
      AND (COALESCE(%(descr)s::text, '') = '' OR description = %(descr)s::text)
), upd AS (
    UPDATE nodes SET locked = FALSE, locked_by = NULL, locked_since = NULL, updated_at = %(now)s::timestamp
    FROM cur WHERE nodes.id = cur.id AND (SELECT n FROM ok) = %(wanted)s::integer
    RETURNING {_RETURN}, cur.locked_since AS old_locked_since
), ev AS (
    INSERT INTO node_events (node, action, who, at, old, new)
    SELECT upd.name, 'unlock', %(by)s::text, %(now)s::timestamp,
        json_build_object('locked_by', %(by)s::text, 'locked', TRUE,
                          'locked_since', to_char(upd.old_locked_since, {_TIME})),
        json_build_object('locked_by', NULL, 'locked', FALSE, 'locked_since', NULL)
    FROM upd
)
SELECT * FROM upd
"""


def unlock_params(names: list[str], locked_by: str, description: str | None, now: datetime) -> dict[str, Any]:
    return {"names": names, "by": locked_by, "descr": description, "now": now, "wanted": len(names)}


def psycopg_conninfo(url: str | URL, lock_timeout_ms: int = PG_LOCK_TIMEOUT_MS) -> str:
    """A libpq connection string from a SQLAlchemy ``postgresql+psycopg://`` URL (row-lock waits
    bounded as on the store's own engine, unless the URL sets ``options`` itself)."""
    u = make_url(url)
    parts = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database,
             "options": pg_lock_timeout_options(lock_timeout_ms),
             **{k: v for k, v in u.query.items() if isinstance(v, str)}}
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v is not None})


def statement_failed(exc: BaseException) -> bool:
    """True when PostgreSQL itself reported that the statement failed (an ERROR with a SQLSTATE, the
    session going on): an autocommit statement then rolled back, so running it again is safe.

    Anything else (connection lost, server gone, an error on the client side) may have come after
    the commit."""
    err = getattr(exc, "orig", exc)  # SQLAlchemy wraps the driver's error
    if not isinstance(err, psycopg.Error) or not err.sqlstate or err.sqlstate.startswith("08"):
        return False
    return (err.diag.severity_nonlocalized or err.diag.severity) == "ERROR"  # not FATAL/PANIC


def with_hosts(records: list[NodeRecord], host_rows: Sequence[Any]) -> list[NodeRecord]:
    """``records`` with ``vm_host`` set from the rows of ``HOSTS_SQL``."""
    hosts = {h.id: NodeRecord.from_row(h) for h in host_rows}
    for r in records:
        r.vm_host = hosts.get(r.vm_host_id)
    return records


def host_ids(records: list[NodeRecord]) -> list[int]:
    """The ids ``HOSTS_SQL`` needs for ``records`` ([] when none is a VM with a host)."""
    return sorted({r.vm_host_id for r in records if r.vm_host_id is not None})


def written_by_lost_statement(url: str | URL, pid: int | None, sql: str,
                              params: dict[str, Any]) -> list[NodeRecord]:
    """What a statement whose outcome is unknown wrote: the records ``sql`` finds ([] = nothing).

    Runs on a new connection, after ending the statement's session ``pid`` (when it may still run),
    so a late commit cannot follow the answer. Unavailable when this cannot be known: the caller
    must then neither answer nor retry."""
    try:
        with psycopg.connect(psycopg_conninfo(url), autocommit=True, row_factory=namedtuple_row,
                             connect_timeout=5) as db:
            if pid is not None:
                ended = db.execute(END_SESSION_SQL, {"pid": pid, "wait_ms": _END_SESSION_MS}).fetchone()
                if ended is None or ended.ended is False:
                    log.error("session %d of a statement with a lost answer did not end in time", pid)
                    raise Unavailable("encountered a DB error; please retry")
            records = [NodeRecord.from_row(r) for r in db.execute(sql, params).fetchall()]
            ids = host_ids(records)
            return with_hosts(records, db.execute(HOSTS_SQL, {"ids": ids}).fetchall() if ids else [])
    except (psycopg.Error, OSError) as exc:
        log.error("could not find out what a statement with a lost answer wrote error=%s: %s",
                  type(exc).__name__, (str(exc).splitlines() or [""])[0])
        raise Unavailable("encountered a DB error; please retry") from None


def run_once(conn: Connection, sql: str, params: dict[str, Any], find_sql: str,
             find_params: dict[str, Any]) -> list[NodeRecord]:
    """Run the autocommit statement ``sql`` once; the records it wrote (hosts set), [] if none.

    It raises only errors after which it provably wrote nothing (``statement_failed``), so a caller
    may retry those. When it may have committed (connection lost, its answer or the hosts query
    failed), ``find_sql`` on a new connection says what it wrote; never run it twice."""
    driver = conn.connection.driver_connection
    pid = driver.info.backend_pid
    try:
        rows = conn.exec_driver_sql(sql, params).all()
    except DBAPIError as exc:
        if statement_failed(exc):
            raise
        # A session that lost its client may still be running the statement: end it first.
        lost = pid if (driver.closed or driver.broken) else None
        log.warning("fast path lost the answer of its statement error=%s; looking it up", type(exc.orig).__name__)
        return written_by_lost_statement(conn.engine.url, lost, find_sql, find_params)
    records = [NodeRecord.from_row(r) for r in rows if r.id is not None]
    ids = host_ids(records)
    try:
        return with_hosts(records, conn.exec_driver_sql(HOSTS_SQL, {"ids": ids}).all() if ids else [])
    except DBAPIError:
        # The statement committed: only the hosts are missing, and a retry would lock again.
        return written_by_lost_statement(conn.engine.url, None, find_sql, find_params)


def lock_first_free(conn: Connection, flags: Flags, params: dict[str, Any], now: datetime) -> list[NodeRecord]:
    """Lock the first ``count`` free candidates: their records in name order, or [] (nothing written)."""
    found = run_once(conn, lock_sql(*flags), {**params, "p_now": now}, LOCKED_BY_REQUEST_SQL,
                     {"p_locked_by": params["p_locked_by"], "p_now": now})
    return sorted(found, key=lambda r: r.name)


def unlock_all(conn: Connection, names: list[str], locked_by: str, description: str | None,
               now: datetime) -> list[NodeRecord]:
    """Unlock ``names`` if every one is held by ``locked_by``; else write nothing and return []."""
    return run_once(conn, UNLOCK_SQL, unlock_params(names, locked_by, description, now), UNLOCKED_BY_REQUEST_SQL,
                    {"names": names, "by": locked_by, "now": now})
