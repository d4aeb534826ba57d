"""lock_many and unlock_many on PostgreSQL from asyncio, without a thread hop.

The lock API's hot endpoints run these one-statement paths (``pg_fast``) on a small
``psycopg_pool.AsyncConnectionPool`` inside the event loop. Whenever the one statement provably
wrote nothing (too few free nodes, a node not held by the caller, no connection, an error
PostgreSQL reported for it), the caller hands the request to ``NodeStore`` in a thread, whose
transactional path waits for held rows, retries transient errors and produces paddles' exact
errors. A statement that may have committed is never handed on: what it wrote is looked up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool

from lablease.store import pg_fast
from lablease.store.pg_fast import psycopg_conninfo
from lablease.store.records import NodeRecord, utcnow

log = logging.getLogger(__name__)
# Waiting longer than this for a pooled connection means the pool is exhausted: let the threaded
# path (its own, larger pool) take the request instead of queueing here.
_GETCONN_TIMEOUT = 5.0


class AsyncLockLane:
    """The one-statement lock/unlock paths on an async connection pool (open inside the event loop)."""

    def __init__(self, url: str, max_size: int):
        self.url = url
        self.pool = AsyncConnectionPool(
            psycopg_conninfo(url), min_size=min(2, max_size), max_size=max_size, open=False,
            kwargs={"autocommit": True, "row_factory": namedtuple_row}, name="lablease-lock-lane",
        )
        self.settled = 0  # requests answered here
        self.handed_over = 0  # requests left to NodeStore (nothing written here)
        self.looked_up = 0  # statements whose outcome was unknown and had to be looked up

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def _run(self, sql: str, params: dict[str, Any], find_sql: str,
                   find_params: dict[str, Any]) -> list[NodeRecord]:
        """Run the autocommit statement ``sql`` once: the records it wrote (hosts set), [] if none.

        When it may have committed without us seeing the answer, ``find_sql`` says what it wrote
        (``pg_fast.written_by_lost_statement``; Unavailable when that cannot be known)."""
        stage = "connect"  # what was under way when an error came
        try:
            async with self.pool.connection(timeout=_GETCONN_TIMEOUT) as conn:
                pid = conn.info.backend_pid
                stage = "statement"
                rows = await (await conn.execute(sql, params)).fetchall()
                stage = "answered"
                records = [NodeRecord.from_row(r) for r in rows if r.id is not None]
                ids = pg_fast.host_ids(records)
                if ids:
                    pg_fast.with_hosts(records, await (await conn.execute(pg_fast.HOSTS_SQL, {"ids": ids})).fetchall())
            return records
        except (psycopg.Error, OSError) as exc:  # psycopg_pool.PoolTimeout is a psycopg.Error too
            if stage == "connect" or (stage == "statement" and pg_fast.statement_failed(exc)):
                # Never sent, or PostgreSQL failed it (and so rolled it back): nothing was written.
                log.info("lock lane handing over error=%s", type(exc).__name__)
                return []
            # It may have committed (or did, and only what followed failed): a hand-over would run it
            # again. A session that lost its client may still be running it, so that one is ended first.
            lingering = stage == "statement" and (conn.closed or conn.broken)
            self.looked_up += 1
            log.warning("lock lane lost the answer of its statement error=%s; looking it up", type(exc).__name__)
            return await asyncio.to_thread(pg_fast.written_by_lost_statement, self.url,
                                           pid if lingering else None, find_sql, find_params)

    async def lock_many(self, count: int, machine_type: str, locked_by: str, description: str | None,
                        os_type: str | None = None, os_version: str | None = None,
                        arch: str | None = None) -> list[NodeRecord] | None:
        """The locked nodes in name order, or None: nothing written, ask ``NodeStore.lock_many``.

        Unavailable (503) when the statement may have locked nodes and that could not be found out."""
        flags, params = pg_fast.lock_params(count, machine_type, locked_by, description, os_type, os_version, arch)
        now = utcnow()  # also identifies this request's locks (locked_since) if its answer is lost
        got = await self._run(pg_fast.lock_sql(*flags), {**params, "p_now": now},
                              pg_fast.LOCKED_BY_REQUEST_SQL, {"p_locked_by": locked_by, "p_now": now})
        if not got:  # the statement locks all ``count`` nodes or none
            self.handed_over += 1
            return None
        self.settled += 1
        return sorted(got, key=lambda r: r.name)

    async def unlock_many(self, names: list[str], locked_by: str,
                          description: str | None = None) -> list[NodeRecord] | None:
        """The unlocked nodes in the order asked, or None: nothing written, ask ``NodeStore.unlock_many``.

        Unavailable (503) when the statement may have unlocked them and that could not be found out."""
        wanted = sorted(set(names))
        if not wanted or not locked_by:
            self.handed_over += 1
            return None
        now = utcnow()  # also identifies this request's unlock events if its answer is lost
        got = await self._run(pg_fast.UNLOCK_SQL, pg_fast.unlock_params(wanted, locked_by, description, now),
                              pg_fast.UNLOCKED_BY_REQUEST_SQL, {"names": wanted, "by": locked_by, "now": now})
        if not got:  # the statement unlocks every one of ``wanted`` or none
            self.handed_over += 1
            return None
        self.settled += 1
        by_name = {r.name: r for r in got}
        return [by_name[n] for n in names if n in by_name]
