"""PostgreSQL fast paths: lock_many and unlock_many as one autocommit statement each.

Each statement picks, checks, updates and writes its events at once (data-modifying CTEs), so a
lock costs one round trip instead of BEGIN/SELECT/UPDATE/INSERT/COMMIT. Both are all-or-nothing
inside the statement: when not every row qualifies, nothing is written and the caller falls
back to the transactional path, which waits for held rows and produces paddles' exact errors.

The statements are plain psycopg SQL (``%(name)s`` parameters), run by the store through
SQLAlchemy's connection (``exec_driver_sql``) and by the lock API's async lane
(``lablease.store.pg_async``) straight on psycopg; psycopg prepares them server-side after a few
uses on a connection, so PostgreSQL stops parsing and planning them.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

from lablease.store.records import COLUMNS

_RETURN = ", ".join(f"nodes.{c}" for c in COLUMNS)
_OUT = ", ".join(f"upd.{c}" for c in COLUMNS)
_TIME = "'YYYY-MM-DD HH24:MI:SS.US'"
Flags = tuple[bool, bool, bool]  # os_type, os_version, arch given

HOSTS_SQL = f"SELECT {', '.join(COLUMNS)} FROM nodes WHERE id = ANY(%(ids)s::integer[])"


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
    WHERE machine_type = ANY(%(types)s::text[]) AND up IS TRUE AND locked IS FALSE{extra}
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
    SELECT id, locked, locked_by, locked_since, description FROM nodes
    WHERE name = ANY(%(names)s::text[]) ORDER BY name FOR UPDATE
), ok AS (
    SELECT count(*) AS n FROM cur
    WHERE locked AND locked_by = %(by)s::text
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


def lock_first_free(conn: Connection, flags: Flags, params: dict[str, Any],
                    now: datetime) -> tuple[int, list[Any]]:
    """Lock the first ``count`` free candidates; returns (candidates seen, locked rows or [])."""
    rows = conn.exec_driver_sql(lock_sql(*flags), {**params, "p_now": now}).all()
    available = rows[0].available if rows else 0
    return available, [r for r in rows if r.id is not None]


def unlock_all(conn: Connection, names: list[str], locked_by: str, description: str | None,
               now: datetime) -> list[Any]:
    """Unlock ``names`` if every one is held by ``locked_by``; else write nothing and return []."""
    return conn.exec_driver_sql(UNLOCK_SQL, unlock_params(names, locked_by, description, now)).all()
