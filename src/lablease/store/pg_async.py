"""lock_many and unlock_many on PostgreSQL from asyncio, without a thread hop.

The lock API's hot endpoints run these one-statement paths (``pg_fast``) on a small
``psycopg_pool.AsyncConnectionPool`` inside the event loop. Whenever the one statement cannot
settle a request (too few free nodes, a node not held by the caller, any database error), nothing
was written and the caller hands the request to ``NodeStore`` in a thread, whose transactional
path waits for held rows, retries transient errors and produces paddles' exact errors.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from lablease.store import pg_fast
from lablease.store.engine import PG_LOCK_TIMEOUT_MS, pg_lock_timeout_options
from lablease.store.records import NodeRecord, utcnow

log = logging.getLogger(__name__)
# Waiting longer than this for a pooled connection means the pool is exhausted: let the threaded
# path (its own, larger pool) take the request instead of queueing here.
_GETCONN_TIMEOUT = 5.0


def psycopg_conninfo(url: str, lock_timeout_ms: int = PG_LOCK_TIMEOUT_MS) -> str:
    """A libpq connection string from a SQLAlchemy ``postgresql+psycopg://`` URL (row-lock waits
    bounded as on the store's own engine, unless the URL sets ``options`` itself)."""
    u = make_url(url)
    parts = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database,
             "options": pg_lock_timeout_options(lock_timeout_ms),
             **{k: v for k, v in u.query.items() if isinstance(v, str)}}
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v is not None})


class AsyncLockLane:
    """The one-statement lock/unlock paths on an async connection pool (open inside the event loop)."""

    def __init__(self, url: str, max_size: int):
        self.pool = AsyncConnectionPool(
            psycopg_conninfo(url), min_size=min(2, max_size), max_size=max_size, open=False,
            kwargs={"autocommit": True, "row_factory": namedtuple_row}, name="lablease-lock-lane",
        )
        self.settled = 0  # requests answered here
        self.handed_over = 0  # requests left to NodeStore (nothing written here)

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def _run(self, sql: str, params: dict[str, Any]) -> list[NodeRecord] | None:
        try:
            async with self.pool.connection(timeout=_GETCONN_TIMEOUT) as conn:
                rows = await (await conn.execute(sql, params)).fetchall()
                records = [NodeRecord.from_row(r) for r in rows if r.id is not None]
                host_ids = [r.vm_host_id for r in records if r.vm_host_id is not None]
                if host_ids:
                    hosts = {h.id: NodeRecord.from_row(h)
                             for h in await (await conn.execute(pg_fast.HOSTS_SQL, {"ids": host_ids})).fetchall()}
                    for r in records:
                        r.vm_host = hosts.get(r.vm_host_id)
                return records
        except (psycopg.Error, OSError) as exc:  # psycopg_pool.PoolTimeout is a psycopg.Error too
            # The statement is atomic, so nothing was written: the threaded path retries it.
            log.info("lock lane handing over error=%s", type(exc).__name__)
            return None

    async def lock_many(self, count: int, machine_type: str, locked_by: str, description: str | None,
                        os_type: str | None = None, os_version: str | None = None,
                        arch: str | None = None) -> list[NodeRecord] | None:
        """The locked nodes in name order, or None: nothing written, ask ``NodeStore.lock_many``."""
        flags, params = pg_fast.lock_params(count, machine_type, locked_by, description, os_type, os_version, arch)
        got = await self._run(pg_fast.lock_sql(*flags), {**params, "p_now": utcnow()})
        if got is None or len(got) < count:
            self.handed_over += 1
            return None
        self.settled += 1
        return sorted(got, key=lambda r: r.name)

    async def unlock_many(self, names: list[str], locked_by: str,
                          description: str | None = None) -> list[NodeRecord] | None:
        """The unlocked nodes in the order asked, or None: nothing written, ask ``NodeStore.unlock_many``."""
        wanted = sorted(set(names))
        if not wanted or not locked_by:
            self.handed_over += 1
            return None
        got = await self._run(pg_fast.UNLOCK_SQL, pg_fast.unlock_params(wanted, locked_by, description, utcnow()))
        if got is None or len(got) != len(wanted):
            self.handed_over += 1
            return None
        self.settled += 1
        by_name = {r.name: r for r in got}
        return [by_name[n] for n in names if n in by_name]
