"""Progress of every node, published to any number of subscribers (store events, metrics, live views).

The engine reports from worker threads; subscribers are either plain callables (called in the
publishing thread, so they must be quick) or asyncio streams (``stream()``), fed through their
event loop so a slow HTTP client never holds up a launch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabEvent:
    """One stage of one node: ``status`` is start, done, failed, retry, made (a resource now exists) or
    waiting (a cloud call is being repeated; ``message`` says why and when).

    ``request`` is the id of the lock request the node belongs to (None for unlocks and the
    reconciler); ``elapsed`` counts seconds since that node's work began.
    """

    node: str
    machine_type: str
    stage: str
    status: str
    request: str | None = None
    attempt: int = 1
    message: str = ""
    elapsed: float = 0.0
    at: float = field(default_factory=time.time)
    made: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Subscriber = Callable[[LabEvent], None]


class ProgressBus:
    """Fan-out of LabEvents; thread-safe. A failing subscriber is logged and never breaks a launch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn`` with every event from now on; returns the function that unsubscribes it."""
        with self._lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)
        return unsubscribe

    def publish(self, event: LabEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            try:
                fn(event)
            except Exception:  # noqa: BLE001 - a broken view must not break provisioning
                log.exception("progress subscriber failed node=%s stage=%s", event.node, event.stage)

    async def stream(self, want: Callable[[LabEvent], bool] = lambda e: True,
                     max_queue: int = 10_000) -> AsyncIterator[LabEvent]:
        """Events matching ``want``, as an async iterator in the running loop (until the consumer stops)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[LabEvent] = asyncio.Queue(max_queue)

        def put(event: LabEvent) -> None:
            if not queue.full():
                queue.put_nowait(event)

        def feed(event: LabEvent) -> None:
            if want(event):
                try:
                    loop.call_soon_threadsafe(put, event)
                except RuntimeError:  # the loop closed: the consumer is gone
                    pass

        unsubscribe = self.subscribe(feed)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()
