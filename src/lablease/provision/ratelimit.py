"""Spacing of API calls: at most one call every ``min_interval`` seconds, across all threads.

A Retry-After from the cloud pauses every thread, not only the one that was told, because the
cloud's limit is per account.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class RateLimiter:
    """Thread-safe minimum spacing between calls plus a shared pause after a rate-limit answer."""

    def __init__(self, min_interval: float = 0.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.min_interval = max(0.0, min_interval)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0  # earliest time the next call may start

    def acquire(self) -> float:
        """Block until this caller's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.min_interval
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` from now (a Retry-After answer)."""
        with self._lock:
            self._next = max(self._next, self._clock() + max(0.0, seconds))
