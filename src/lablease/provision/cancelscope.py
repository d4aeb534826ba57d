"""The engine's cancel flag with a per-thread part: ``cancel()`` stops every create of a provider, a
scope's own event stops only the create running in that thread (a lock request whose client went
away, a node an admin forced free), while the other requests of the provider go on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SLICE = 0.05  # how late a scoped wait sees the engine-wide flag (the scope's own event wakes it at once)


class CancelScope:
    """Looks like a ``threading.Event`` to the waits (``is_set``, ``wait``): set when the engine-wide flag
    is set or, in a thread inside ``scope(event)``, when that event is."""

    def __init__(self) -> None:
        self._all = threading.Event()
        self._local = threading.local()

    def set(self) -> None:
        """Cancel every create of the provider (until ``clear``)."""
        self._all.set()

    def clear(self) -> None:
        self._all.clear()

    def _mine(self) -> threading.Event | None:
        return getattr(self._local, "event", None)

    def is_set(self) -> bool:
        mine = self._mine()
        return self._all.is_set() or (mine is not None and mine.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` s, waking when either flag is set; returns whether one is."""
        mine = self._mine()
        if mine is None:
            return self._all.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = SLICE if deadline is None else min(SLICE, deadline - time.monotonic())
            if left <= 0:
                return False
            mine.wait(left)
        return True

    @contextmanager
    def scope(self, event: threading.Event | None) -> Iterator[None]:
        """Within this block, in this thread, ``event`` being set counts as cancelled too (None: no change)."""
        before = self._mine()
        self._local.event = event if event is not None else before
        try:
            yield
        finally:
            self._local.event = before
