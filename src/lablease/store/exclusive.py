"""One holder at a time across processes: a PostgreSQL advisory lock, or a lock file beside SQLite's.

The reconciler runs in every lab-service process, but one pass at a time: two passes racing
would both see the same leak twice and delete it twice, or fight over a stuck node.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import filelock
from sqlalchemy import text
from sqlalchemy.engine import make_url

from lablease.store.engine import Engines


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL's advisory lock space)."""
    return int.from_bytes(hashlib.sha256(f"lablease:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def exclusive(engines: Engines, name: str) -> Iterator[bool]:
    """Yield True while this process alone holds ``name``; False (at once, no waiting) if another does."""
    if engines.dialect == "postgresql":
        with engines.write.connect() as conn:
            key = _advisory_key(name)
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
        return
    database = make_url(str(engines.write.url)).database
    path = Path(database) if database and database != ":memory:" else None
    if path is None:  # an in-memory database lives in one process only
        yield True
        return
    lock = filelock.FileLock(str(path) + f".{name}.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
