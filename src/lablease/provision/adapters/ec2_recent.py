"""What this process just made on EC2 and no listing has shown yet: EC2's API is eventually consistent.

Right after RunInstances or CreateVolume answered, a DescribeInstances or DescribeVolumes (by id or by tag)
may not show the new resource for a few seconds (EC2 API reference, "Eventual consistency in the Amazon EC2
API"). The engine takes a resource missing from a listing begun after its create for gone ("disappeared while
booting"), which would end a good attempt. So for ``grace`` seconds after its create answer a resource that a
listing leaves out is reported as the create answered it (pending, creating), until a listing shows it or it
is deleted.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

R = TypeVar("R")

GRACE = 30.0


class RecentlyMade(Generic[R]):
    """Resources (with an ``id``) by id, each with the time its create answered; safe for many threads."""

    def __init__(self, grace: float = GRACE):
        self.grace = grace
        self._made: dict[str, tuple[float, R]] = {}
        self._lock = threading.Lock()

    def add(self, resource: R) -> None:
        with self._lock:
            self._made[getattr(resource, "id")] = (time.monotonic(), resource)

    def drop(self, ident: str) -> None:
        with self._lock:
            self._made.pop(ident, None)

    def get(self, ident: str) -> R | None:
        """The create answer of ``ident`` while a GET may still miss it."""
        with self._lock:
            self._expire()
            made = self._made.get(ident)
        return None if made is None else made[1]

    def complete(self, listed: list[R]) -> list[R]:
        """``listed`` (a full listing) plus what was made within the grace and is not in it yet; a resource the
        listing shows is no longer remembered."""
        ids = {getattr(r, "id") for r in listed}
        with self._lock:
            self._expire()
            for ident in ids & set(self._made):
                del self._made[ident]
            missing = [resource for _, resource in self._made.values()]
        return listed + missing

    def _expire(self) -> None:
        now = time.monotonic()
        for ident in [i for i, (at, _) in self._made.items() if now - at > self.grace]:
            del self._made[ident]
