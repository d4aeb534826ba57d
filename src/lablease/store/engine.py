"""Engines for the node store: SQLite (WAL, BEGIN IMMEDIATE for writes) or PostgreSQL (psycopg 3).

SQLite: Python's sqlite3 driver does not begin a transaction before a SELECT, so the
documented SQLAlchemy recipe takes over BEGIN; write transactions use BEGIN IMMEDIATE so
the read-check-write of a lock happens under the database's single write lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# PostgreSQL waits for a row lock held by another session for ever by default: one stuck session
# (an admin's open psql transaction) would then hold every request thread. Give up after this;
# the store retries the transaction (55P03 is transient) and then answers 503.
PG_LOCK_TIMEOUT_MS = 5_000


def pg_lock_timeout_options(lock_timeout_ms: int) -> str:
    """libpq ``options`` that bound row-lock waits of a session."""
    return f"-c lock_timeout={int(lock_timeout_ms)}"


@dataclass(frozen=True)
class Engines:
    """A read engine and a write engine over one pool; on PostgreSQL both are the same."""

    read: Engine
    write: Engine
    autocommit: Engine | None = None  # PostgreSQL: one-statement fast paths

    @property
    def dialect(self) -> str:
        return self.write.dialect.name

    def dispose(self) -> None:
        self.write.dispose()


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None  # let the "begin" hook below emit BEGIN
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # noqa: ANN001
        mode = "IMMEDIATE" if conn.get_execution_options().get("lablease_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_engines(url: str, pool_size: int = 20, lock_timeout_ms: int = PG_LOCK_TIMEOUT_MS) -> Engines:
    """Create the engines for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed, pool_size=pool_size, max_overflow=pool_size,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _sqlite_hooks(engine)
        return Engines(read=engine, write=engine.execution_options(lablease_write=True))
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # No overflow: with the lock lane's async pool of the same size, a worker holds at most
        # 2 x pool_size connections, so the defaults (2 workers x 2 x 20) fit max_connections 100.
        connect_args = {} if "options" in parsed.query else {"options": pg_lock_timeout_options(lock_timeout_ms)}
        engine = create_engine(
            parsed, pool_size=pool_size, max_overflow=0, pool_pre_ping=False,
            isolation_level="READ COMMITTED", connect_args=connect_args,
        )
        return Engines(read=engine, write=engine, autocommit=engine.execution_options(isolation_level="AUTOCOMMIT"))
    raise ValueError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite:///PATH or postgresql+psycopg://..."
    )
