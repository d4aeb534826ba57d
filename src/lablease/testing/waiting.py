"""One way for tests to wait for something to happen: poll a predicate until it holds, or fail naming what.

A fixed ``time.sleep`` before an assertion either wastes time or, on a busy machine, is too short and the test
fails (or, worse, passes for the wrong reason). ``wait_until`` returns as soon as the thing happened and
says what never happened when it times out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], *, what: str, timeout: float = 10.0, interval: float = 0.05,
               ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and return that.

    After ``timeout`` seconds raise AssertionError naming ``what`` (what was waited for) and the last value
    seen (or the last exception listed in ``ignoring``, which count as "not yet"). The predicate is always
    called at least once, and once more at the deadline, so a slow interval never hides a late success.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignoring as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(min(interval, remaining))
