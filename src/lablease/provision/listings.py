"""Per-provider cache of the cloud's images, sizes, networks and security groups, refreshed on a TTL.

Many threads asking at once cause one fetch: the first caller loads, the others wait for it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class _Entry:
    value: Any
    fetched: float


class ListingCache:
    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock_for(self, kind: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(kind, threading.Lock())

    def get(self, kind: str, load: Callable[[], Any]) -> Any:
        """The cached listing of ``kind``, loading it with ``load`` when missing or older than the TTL."""
        entry = self._entries.get(kind)
        if entry is not None and self._clock() - entry.fetched < self.ttl:
            return entry.value
        with self._lock_for(kind):
            entry = self._entries.get(kind)  # another thread may have loaded it while we waited
            if entry is not None and self._clock() - entry.fetched < self.ttl:
                return entry.value
            value = load()
            self._entries[kind] = _Entry(value, self._clock())
            return value

    def invalidate(self, kind: str | None = None) -> None:
        with self._guard:
            if kind is None:
                self._entries.clear()
            else:
                self._entries.pop(kind, None)
