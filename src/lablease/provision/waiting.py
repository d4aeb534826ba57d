"""Polling with backoff, bounded by a deadline: the engine's only way to wait (no fixed sleeps)."""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def poll(check: Callable[[], T | None], timeout: float, on_timeout: Callable[[], Exception], *,
         first: float = 0.2, factor: float = 1.5, cap: float = 5.0,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> T:
    """Call ``check`` until it returns a value (not None); raise ``on_timeout()`` after ``timeout`` seconds.

    ``check`` may raise to stop early (a server in ERROR). Delays grow from ``first`` by ``factor``
    up to ``cap``, with +-20% jitter so many nodes do not poll in lock-step.
    """
    deadline = clock() + timeout
    delay = first
    while True:
        result = check()
        if result is not None:
            return result
        remaining = deadline - clock()
        if remaining <= 0:
            raise on_timeout()
        sleep(min(delay * random.uniform(0.8, 1.2), remaining))
        delay = min(delay * factor, cap)


def poll_bound(seconds: float, *, first: float = 0.2, factor: float = 1.5, cap: float = 5.0) -> int:
    """The most requests ``poll`` makes before a wait of ``seconds`` is over (jitter at its shortest).

    The request-count bound in docs/provisioning.md is built from this.
    """
    polls, elapsed, delay = 1, 0.0, first
    while elapsed < seconds:
        elapsed += delay * 0.8
        delay = min(delay * factor, cap)
        polls += 1
    return polls
