"""What the warm pools and the reconciler need of the lab service that runs them, as an interface:
they are parts of the service, started by it, and must not import it back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from lablease.lab.workers import ProviderWorker
from lablease.store import NodeStore


class LabHost(Protocol):
    """The service's store, its lease identity and its provider workers."""

    store: NodeStore
    owner: str
    lease_seconds: float
    draining: bool
    workers: Mapping[str, ProviderWorker]
