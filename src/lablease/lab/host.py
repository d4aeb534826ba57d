"""What the warm pools and the reconciler need of the lab service that runs them, as an interface:
they are parts of the service, started by it, and must not import it back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from lablease.lab.bus import LabEvent
from lablease.lab.health import HealthSnapshot
from lablease.lab.routing import Routes
from lablease.lab.workers import ProviderWorker
from lablease.provision.calls import CallObserver
from lablease.store import NodeStore


class LabHost(Protocol):
    """The service's store, its lease identity, its provider workers (by provider) and which provider serves
    which machine type."""

    store: NodeStore
    owner: str
    lease_seconds: float
    draining: bool
    workers: Mapping[str, ProviderWorker]
    routes: Routes


class LabObserver(Protocol):
    """What watches the lab at work (``lab.metrics.LabMetrics``): its events, reconciler passes, cloud calls and
    each provider's health."""

    def on_event(self, event: LabEvent) -> None: ...
    def on_reconcile(self, report: Any) -> None: ...
    def on_health(self, snapshot: HealthSnapshot) -> None: ...
    def cloud_call_observer(self, machine_type: str) -> CallObserver: ...
