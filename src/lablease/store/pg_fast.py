"""PostgreSQL fast paths: lock_many and unlock_many as one autocommit statement each.

Each statement picks, checks, updates and writes its events at once (data-modifying CTEs), so a
lock costs one round trip instead of BEGIN/SELECT/UPDATE/INSERT/COMMIT. Both are all-or-nothing
inside the statement: when not every row qualifies, nothing is written and the caller falls
back to the transactional path, which waits for held rows and produces paddles' exact errors.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, text

from lablease.store.records import COLUMNS

_RETURN = ", ".join(f"nodes.{c}" for c in COLUMNS)
_OUT = ", ".join(f"upd.{c}" for c in COLUMNS)
_TIME = "'YYYY-MM-DD HH24:MI:SS.US'"


@lru_cache(maxsize=16)
def _lock_sql(os_type: bool, os_version: bool, arch: bool):
    extra = "".join([
        " AND os_type = CAST(:c_os_type AS text)" if os_type else "",
        " AND os_version = CAST(:c_os_version AS text)" if os_version else "",
        " AND arch = CAST(:c_arch AS text)" if arch else "",
    ])
    return text(f"""
WITH picked AS (
    SELECT id, description AS old_description FROM nodes
    WHERE machine_type = ANY(CAST(:types AS text[])) AND up IS TRUE AND locked IS FALSE{extra}
    ORDER BY name LIMIT :count FOR UPDATE SKIP LOCKED
), enough AS (SELECT count(*) AS n FROM picked),
upd AS (
    UPDATE nodes SET locked = TRUE, locked_by = CAST(:p_locked_by AS text), locked_since = CAST(:p_now AS timestamp),
        description = CAST(:p_description AS text), updated_at = CAST(:p_now AS timestamp)
    FROM picked WHERE nodes.id = picked.id AND (SELECT n FROM enough) = :count
    RETURNING {_RETURN}, picked.old_description
), ev AS (
    INSERT INTO node_events (node, action, who, at, old, new)
    SELECT upd.name, 'lock', CAST(:p_locked_by AS text), CAST(:p_now AS timestamp),
        json_build_object('locked', FALSE, 'locked_by', NULL, 'description', upd.old_description),
        json_build_object('locked', TRUE, 'locked_by', CAST(:p_locked_by AS text),
                          'description', CAST(:p_description AS text))
    FROM upd
)
SELECT (SELECT n FROM enough) AS available, {_OUT}, upd.old_description
FROM (SELECT 1) AS one LEFT JOIN upd ON TRUE
""")


_UNLOCK_SQL = text(f"""
WITH cur AS (
    SELECT id, locked, locked_by, locked_since, description FROM nodes
    WHERE name = ANY(CAST(:names AS text[])) ORDER BY name FOR UPDATE
), ok AS (
    SELECT count(*) AS n FROM cur
    WHERE locked AND locked_by = CAST(:by AS text)
      AND (COALESCE(CAST(:descr AS text), '') = '' OR description = CAST(:descr AS text))
), upd AS (
    UPDATE nodes SET locked = FALSE, locked_by = NULL, locked_since = NULL, updated_at = CAST(:now AS timestamp)
    FROM cur WHERE nodes.id = cur.id AND (SELECT n FROM ok) = :wanted
    RETURNING {_RETURN}, cur.locked_since AS old_locked_since
), ev AS (
    INSERT INTO node_events (node, action, who, at, old, new)
    SELECT upd.name, 'unlock', CAST(:by AS text), CAST(:now AS timestamp),
        json_build_object('locked_by', CAST(:by AS text), 'locked', TRUE,
                          'locked_since', to_char(upd.old_locked_since, {_TIME})),
        json_build_object('locked_by', NULL, 'locked', FALSE, 'locked_since', NULL)
    FROM upd
)
SELECT * FROM upd
""")


def lock_first_free(conn: Connection, flags: tuple[bool, bool, bool], params: dict[str, Any],
                    now: datetime) -> tuple[int, list[Any]]:
    """Lock the first ``count`` free candidates; returns (candidates seen, locked rows or [])."""
    rows = conn.execute(_lock_sql(*flags), {**params, "p_now": now}).all()
    available = rows[0].available if rows else 0
    return available, [r for r in rows if r.id is not None]


def unlock_all(conn: Connection, names: list[str], locked_by: str, description: str | None,
               now: datetime) -> list[Any]:
    """Unlock ``names`` if every one is held by ``locked_by``; else write nothing and return []."""
    return conn.execute(_UNLOCK_SQL, {"names": names, "by": locked_by, "descr": description,
                                      "now": now, "wanted": len(names)}).all()
