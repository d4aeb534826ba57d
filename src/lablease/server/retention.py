"""The events retention pass of a lock server: node_events older than ``events_retention_days`` go.

It runs in every ``lablease serve`` (a plain lock server as well as the lab service: both write an
event per change), once at start-up and then daily, on its own thread: the store deletes in small
batches, each its own transaction, so locks are never held up behind a pass. Several workers or
processes on one database may each run it; deleting rows already gone is harmless.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from lablease.store import NodeStore
from lablease.store.records import utcnow

log = logging.getLogger(__name__)

DAY = 86400.0


class EventPruner:
    """Deletes events older than ``days`` (0: keep for ever) now and every ``every`` seconds."""

    def __init__(self, store: NodeStore, days: float, every: float = DAY):
        self.store = store
        self.days = days
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-pruner", daemon=True)

    def start(self) -> None:
        if self.days > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def run_once(self) -> int:
        """One pass: delete every event older than the retention; returns how many went."""
        if self.days <= 0:
            return 0
        gone = self.store.prune_events(utcnow() - timedelta(days=self.days), stopping=self._stop.is_set)
        if gone:
            log.info("events retention: deleted %d events older than %g days", gone, self.days)
        return gone

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - a database hiccup: the next pass tries again
                log.warning("events retention pass failed", exc_info=True)
            self._stop.wait(self.every)
