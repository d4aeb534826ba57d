"""Polling with backoff, bounded by a deadline: the engine's only way to wait (no fixed sleeps).

A wait can also be cut short by a ``threading.Event`` (the engine's cancel): it then raises at
once instead of running out its timeout.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, TypeVar

from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError, Stage

T = TypeVar("T")


def cancelled(stage: Stage, node: str | None, during: str) -> ProvisionError:
    """The error of a wait stopped by ``Provisioner.cancel()``: never retried; the attempt is rolled back."""
    return ProvisionError(stage, node, f"cancelled while {during}", kind=ErrorKind.CANCELLED)


def poll(check: Callable[[], T | None], timeout: float, on_timeout: Callable[[], Exception], *,
         first: float = 0.2, factor: float = 1.5, cap: float = 5.0,
         sleep: Callable[[float], object] | None = None, clock: Callable[[], float] = time.monotonic,
         cancel: threading.Event | None = None, on_cancel: Callable[[], Exception] | None = None) -> T:
    """Call ``check`` until it returns a value (not None); raise ``on_timeout()`` after ``timeout`` seconds.

    ``check`` may raise to stop early (a server in ERROR). Delays grow from ``first`` by ``factor``
    up to ``cap``, with +-20% jitter so many nodes do not poll in lock-step. Once ``cancel`` is set
    the wait raises ``on_cancel()`` instead of checking again, without sleeping out its delay.
    """
    if sleep is None:
        sleep = cancel.wait if cancel is not None else time.sleep
    deadline = clock() + timeout
    delay = first
    while True:
        if cancel is not None and cancel.is_set():
            raise on_cancel() if on_cancel is not None else cancelled(Stage.CREATE, None, "waiting")
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
