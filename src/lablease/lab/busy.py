"""A count of work in progress that others can read or wait out (requests in flight, warm-pool claims)."""

from __future__ import annotations

import threading


class Busy:
    """``with busy:`` counts the block as running; ``wait_idle`` waits until nothing runs."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0

    def __enter__(self) -> None:
        with self._cond:
            self.count += 1

    def __exit__(self, *_: object) -> None:
        with self._cond:
            self.count -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing runs; False when ``timeout`` seconds passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self.count == 0, timeout=timeout)
