"""The lease heartbeat of a lab service process: it renews the leases the process holds, and stops
the creates of nodes the process no longer holds (an admin forced them free, or another process
took them over), so their work ends and rolls back instead of finishing for nobody."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from lablease.lab.workers import ProviderWorker
from lablease.store import NodeState, NodeStore, NotFound

log = logging.getLogger(__name__)

LOOK_EVERY = 2.0  # seconds between looks for lost nodes while creates run (cheap: one read per create)


class Heartbeat:
    """Renews ``owner``'s leases every ``lease_seconds / 3`` (so two beats may fail before a lease lapses)."""

    def __init__(self, store: NodeStore, owner: str, lease_seconds: float, workers: Mapping[str, ProviderWorker]):
        self.store = store
        self.owner = owner
        self.every = lease_seconds / 3
        self.lease_seconds = lease_seconds
        self.workers = workers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-lease-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        due = time.monotonic() + self.every
        while not self._stop.wait(min(LOOK_EVERY, self.every)):
            if time.monotonic() >= due:
                due = time.monotonic() + self.every
                try:
                    self.store.renew_leases(self.owner, self.lease_seconds)
                except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again
                    log.warning("lease heartbeat failed", exc_info=True)
            try:
                self.stop_lost()
            except Exception:  # noqa: BLE001
                log.warning("looking for nodes this process lost failed", exc_info=True)

    def stop_lost(self) -> list[str]:
        """Stop every create here whose node is no longer ``provisioning`` under this process's lease."""
        stopped = []
        for worker in self.workers.values():
            for record in worker.creating():
                try:
                    node = self.store.get(record)
                except NotFound:
                    node = None
                if node is not None and node.state == NodeState.PROVISIONING and node.lease_owner == self.owner:
                    continue
                holder = "deleted" if node is None else f"{node.state}, held by {node.lease_owner or 'nobody'}"
                log.warning("node %s is no longer this process's (%s): stopping its create", record, holder)
                if worker.stop_create(record):
                    stopped.append(record)
        return stopped
