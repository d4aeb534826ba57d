"""Prometheus metrics fed by the engine's progress callbacks (one collector per registry, no globals)."""

from __future__ import annotations

import threading
import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from lablease.provision.models import ProgressEvent

_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)


class ProvisionMetrics:
    """``on_progress`` callback that counts stage events and times each stage of each node.

    A stage lasts from its "start" to the next event of the same node (the next stage's start,
    or the node's done/failed/retry), so the histogram shows where provisioning time goes.
    """

    def __init__(self, registry: CollectorRegistry, provider: str, clock: Callable[[], float] = time.monotonic):
        self.provider = provider
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, tuple[str, float]] = {}  # node -> (stage, started)
        self.events = Counter("lablease_provision_events", "Stage events of nodes, by stage and status",
                              ["provider", "stage", "status"], registry=registry)
        self.stage_seconds = Histogram("lablease_provision_stage_seconds", "Time spent in each stage of a node",
                                       ["provider", "stage"], buckets=_BUCKETS, registry=registry)

    def __call__(self, event: ProgressEvent) -> None:
        now = self._clock()
        self.events.labels(self.provider, event.stage, event.status).inc()
        with self._lock:
            previous = self._open.pop(event.node, None)
            if event.status == "start":
                self._open[event.node] = (event.stage, now)
        if previous is not None:
            stage, started = previous
            self.stage_seconds.labels(self.provider, stage).observe(now - started)
