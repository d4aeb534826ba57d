"""Events retention: node_events rows older than the lab's retention are deleted, a batch at a time.

Mixed into NodeStore. Every lock writes a handful of event rows and nothing else removes them, so
without pruning the table (and the SQLite file) grows for ever. Each batch is its own short write
transaction: on SQLite, which has one writer, a lock waits for at most one batch, never for the
whole pass; on PostgreSQL the deleted rows are event rows no lock touches.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, delete, select

from lablease.store.models import node_events

PRUNE_BATCH = 1000  # rows per transaction: a few milliseconds of the write lock on SQLite


class EventRetention:
    """Pruning of the event trail (needs NodeStore's ``_write``)."""

    def prune_events(self, before: datetime, *, batch: int = PRUNE_BATCH,
                     stopping: Callable[[], bool] = lambda: False) -> int:
        """Delete every event written before ``before`` (naive UTC), ``batch`` rows per transaction;
        returns how many went. Node records are never touched. ``stopping`` is asked between batches
        (a server shutting down ends a long first pass at once; the next pass goes on)."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        oldest = (select(node_events.c.id).where(node_events.c.at < before)
                  .order_by(node_events.c.at).limit(batch))

        def one_batch(conn: Connection) -> int:
            ids = list(conn.execute(oldest).scalars())
            if ids:
                conn.execute(delete(node_events).where(node_events.c.id.in_(ids)))
            return len(ids)

        total = 0
        while True:
            done = self._write(one_batch)  # type: ignore[attr-defined]
            total += done
            if done < batch or stopping():
                return total
