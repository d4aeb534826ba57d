"""Work over many nodes on a bounded thread pool that an interrupt (Ctrl-C, SIGTERM) stops cleanly."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def map_interruptible(fn: Callable[[Any], Any], items: list, *, workers: int, name: str,
                      on_stop: Callable[[], None], on_interrupt: Callable[[list], None] | None = None) -> list:
    """``fn`` over ``items`` on up to ``workers`` threads, results in order.

    On Ctrl-C (any BaseException while waiting) ``on_stop`` is called (the engine cancels its waits): the
    items not started yet are dropped, the running ones stop waiting and roll back, and ``on_interrupt``
    gets the results that did come back, so that what they made can be undone before the interrupt goes up.
    """
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix=name)
    futures = [pool.submit(fn, item) for item in items]
    try:
        return [f.result() for f in futures]
    except BaseException:
        on_stop()
        pool.shutdown(wait=True, cancel_futures=True)
        if on_interrupt is not None:
            on_interrupt([f.result() for f in futures if f.done() and not f.cancelled() and f.exception() is None])
        raise
    finally:
        pool.shutdown(wait=True)
