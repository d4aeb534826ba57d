"""The last provisioning stage of every node, kept in memory from the lab's progress bus.

The nodes table shows each busy node's stage (create, boot, volume, dns, ssh) in its row. The row
is rendered on the server (so it reads without JavaScript and a refresh keeps the stage), but the
node record holds only the state, and reading the stage back from the event table for every row of
every refresh would cost a query per node. The bus already tells every stage as it happens, so a
subscriber keeps the latest one per node.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from lablease.lab.bus import LabEvent

MAX_NODES = 10_000  # bounded: a lab with more busy nodes than this loses the oldest stages, not memory


@dataclass(frozen=True)
class Stage:
    """A node's latest stage: ``status`` is start, done, failed, retry, made or freed."""

    stage: str
    status: str
    attempt: int
    message: str
    elapsed: float
    at: float

    def label(self) -> str:
        """``boot``, ``ssh (attempt 2)``, ``create failed``: what the table's stage cell says."""
        text = self.stage if self.status in ("start", "done", "made") else f"{self.stage} {self.status}"
        return text + (f" (attempt {self.attempt})" if self.attempt > 1 else "")


class StageTracker:
    """A ProgressBus subscriber (called in the publishing thread, so it only stores)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, Stage] = {}

    def __call__(self, event: LabEvent) -> None:
        stage = Stage(event.stage, event.status, event.attempt, event.message, event.elapsed, event.at or time.time())
        with self._lock:
            self._stages.pop(event.node, None)  # re-insert: the dict stays ordered oldest first
            self._stages[event.node] = stage
            while len(self._stages) > MAX_NODES:
                self._stages.pop(next(iter(self._stages)))

    def get(self, node: str) -> Stage | None:
        with self._lock:
            return self._stages.get(node)
