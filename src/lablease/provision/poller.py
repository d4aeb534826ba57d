"""Shared polls: one listing per interval answers every node of a provider that waits on the cloud.

A node waiting for its server to run, a volume to attach or a deletion to finish used to ask for
its own resource (``GET /servers/<id>``) at every poll; a rate-limited cloud account pays for each
of those, so a batch of N nodes cost N requests per interval. A ``SharedListing`` lists all servers
(or all volumes) on one thread instead and lets every waiter, of every batch and every concurrent
request of the provider, look itself up in that one answer: requests per interval no longer grow
with the number of nodes. (Nodepool's state machines do the same.)

The rules, each there for a reason:

* Freshness. A wait gives ``since=listing.mark()``, taken after the action it waits on (the create,
  the attach, the delete). Only a listing *started* after that mark may answer it: an older one could
  show the volume still available and read as a failed attach. A listing that is fresh enough and
  already in hand answers at once, without a request.
* Pace. Every waiter keeps its own backoff (``first``, x ``factor``, up to ``cap``), as ``poll`` does.
  The listing runs when the earliest waiter is due; every waiter it answers counts it as its poll and
  schedules its next one from that listing's time, so waiters line up behind one listing instead of
  each keeping a clock of its own. The youngest waiter sets the pace, never more often than its ``first``.
  A waiter that has not yet looked at the answer it was given is not due: on a busy machine the
  threads wake late, and a listing for them then would be wasted.
* Life. The listing thread starts with the first waiter and lists only while someone waits; it ends
  after ``linger`` seconds without a waiter (a thread keeps its libcloud driver, and a new one may cost
  a Keystone v3 catalog request). ``close()`` ends it for good and fails the waits still running.
* Cancel. A wait given a ``cancel`` event looks at it at least every ``cancel_slice`` seconds and gives
  up then, even while a listing is still in flight.
* Errors. A listing that fails (after the caller's own retries) fails the waits it would have
  answered, each under its own stage and node, exactly as their own GETs would have failed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Mapping, TypeVar

from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.waiting import cancelled

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Nova's and Cinder's default `osapi_max_limit`. The adapter follows "next" links (adapters/openstack_calls.py),
# but a listing this long is still not taken to prove that something is gone: a cloud that truncates without a
# link would otherwise make a missing resource look deleted. One GET tells, only for projects this big.
PAGE_LIMIT = 1000


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    """One answer of the listing: ``items`` by id; ``complete`` when it cannot be a truncated page."""

    seq: int            # the listing's number; a later listing has a higher one
    items: Mapping[str, T]
    complete: bool
    taken: float        # clock() when the answer arrived


@dataclass(eq=False)
class _Waiter:
    due: float                  # when it wants its next look
    delay: float                # the pause before the look after next
    factor: float
    cap: float
    seen: int                   # the newest listing it has looked at (or its `since`)
    error: ProvisionError | None = field(default=None)
    once: bool = False          # an expectation: no thread waits; gone after one listing answered it


class SharedListing(Generic[T]):
    """The listing of one kind of resource (``load``), shared by every waiter of one provider. Thread-safe."""

    def __init__(self, kind: str, load: Callable[[], list[T]], *, key: Callable[[T], str] = lambda item: item.id,
                 page_limit: int = PAGE_LIMIT, linger: float = 30.0, cancel_slice: float = 0.1,
                 clock: Callable[[], float] = time.monotonic):
        self.kind = kind
        self._load = load
        self._key = key
        self.page_limit = page_limit  # may be lowered for an operator-lowered osapi_max_limit
        self._linger = linger
        self._slice = cancel_slice
        self._clock = clock
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)      # waiters wait here for answers
        self._due = threading.Condition(self._lock)       # the listing thread waits here for a due waiter
        self._waiters: set[_Waiter] = set()
        self._started = 0                   # listings begun so far (the next one gets _started + 1)
        self._latest: Snapshot[T] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.listings = 0                   # listings answered, failed ones included (for tests and metrics)

    # -- waiting ---------------------------------------------------------------------------------

    def mark(self) -> int:
        """Take right after an action: a wait given this as ``since`` is answered only by later listings."""
        with self._cond:
            return self._started

    def wait(self, check: Callable[[Snapshot[T]], R | None], *, since: int, timeout: float,
             on_timeout: Callable[[], Exception], stage: Stage, node: str | None, first: float = 0.2,
             factor: float = 1.5, cap: float = 5.0, cancel: threading.Event | None = None,
             on_cancel: Callable[[], Exception] | None = None) -> R:
        """Call ``check`` on each listing newer than ``since`` until it returns a value (not None).

        ``check`` runs in the caller's thread and may raise to stop early. Raises ``on_timeout()``
        after ``timeout`` seconds, ``on_cancel()`` once ``cancel`` is set, and a ProvisionError of
        ``stage`` and ``node`` when a listing fails or the listing is closed.
        """
        now = self._clock()
        deadline = now + timeout
        me = _Waiter(due=now + first, delay=min(first * factor, cap), factor=factor, cap=cap, seen=since)
        with self._cond:
            if self._closed:
                raise self._closed_error(stage, node)
            self._waiters.add(me)
            if self._latest is None or self._latest.seq <= since:
                self._wake_thread()  # else the listing in hand may answer: _next starts a thread if it does not
        try:
            while True:
                snapshot = self._next(me, deadline, cancel)
                if snapshot is _CANCELLED:
                    raise on_cancel() if on_cancel is not None else cancelled(stage, node, f"waiting on {self.kind}")
                if snapshot is _TIMEOUT:
                    raise on_timeout()
                if snapshot is _CLOSED:
                    raise self._closed_error(stage, node)
                if isinstance(snapshot, ProvisionError):
                    raise ProvisionError(stage, node, snapshot.message, kind=snapshot.kind) from None
                result = check(snapshot)
                if result is not None:
                    return result
        finally:
            with self._cond:
                self._waiters.discard(me)
                self._due.notify()

    def expect(self, *, since: int, first: float = 0.2) -> None:
        """Have one listing begun after ``since`` taken about ``first`` seconds from now, with no thread waiting.

        For a wait that will come later and probably find its answer ready (the attachments, checked
        after the SSH wait): that listing is then in hand when the wait begins, which costs nothing
        more than the wait's own first look would, and is shared with whoever is due then.
        """
        with self._cond:
            if self._closed or (self._latest is not None and self._latest.seq > since):
                return  # closed, or the listing in hand already answers it
            self._waiters.add(_Waiter(due=self._clock() + first, delay=first, factor=1.0, cap=first, seen=since,
                                      once=True))
            self._wake_thread()

    def _wake_thread(self) -> None:
        """Start the listing thread if it is not running, and have it look at the waiters again (lock held)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"poll-{self.kind}", daemon=True)
            self._thread.start()
        self._due.notify()

    def _next(self, me: _Waiter, deadline: float, cancel: threading.Event | None):
        """The next listing ``me`` has not looked at, or why there is none (cancel, timeout, closed, error)."""
        with self._cond:
            while True:
                if cancel is not None and cancel.is_set():
                    return _CANCELLED
                if me.error is not None:
                    return me.error
                latest = self._latest
                if latest is not None and latest.seq > me.seen:
                    me.seen = latest.seq
                    self._due.notify()  # caught up: it may be the one the listing thread waits for
                    return latest
                if self._closed:
                    return _CLOSED
                left = deadline - self._clock()
                if left <= 0:
                    return _TIMEOUT
                if self._thread is None:
                    self._wake_thread()  # a new listing is needed and nobody lists (it ended after its linger)
                self._cond.wait(min(left, self._slice) if cancel is not None else left)

    def _closed_error(self, stage: Stage, node: str | None) -> ProvisionError:
        return ProvisionError(stage, node, f"stopped waiting on {self.kind}: the provisioner was closed",
                              kind=ErrorKind.CANCELLED)

    # -- the listing thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            seq = self._wait_until_due()
            if seq is None:
                return
            error: ProvisionError | None = None
            items: dict[str, T] = {}
            try:
                listed = self._load()
                items = {self._key(item): item for item in listed}
            except ProvisionError as exc:
                error = exc
            except Exception as exc:
                log.exception("listing failed kind=%s", self.kind)
                error = ProvisionError(Stage.DESTROY, None, f"listing {self.kind}: unexpected "
                                       f"{type(exc).__name__}: {exc}", kind=ErrorKind.BUG)
            self._publish(seq, items, error)

    def _wait_until_due(self) -> int | None:
        """Block until a waiter is due (then number the listing) or the thread should end (None)."""
        idle_since: float | None = None
        with self._cond:
            while True:
                if self._closed:
                    self._thread = None
                    return None
                now = self._clock()
                if self._waiters:
                    idle_since = None
                    latest = self._latest.seq if self._latest is not None else 0
                    # A waiter with an answer (or error) it has not looked at yet is not due.
                    dues = [w.due for w in self._waiters if w.seen >= latest and w.error is None]
                    if dues and min(dues) <= now:
                        self._started += 1
                        return self._started
                    self._due.wait(min(dues) - now if dues else None)
                    continue
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= self._linger:
                    self._thread = None
                    return None
                self._due.wait(self._linger - (now - idle_since))

    def _publish(self, seq: int, items: dict[str, T], error: ProvisionError | None) -> None:
        taken = self._clock()
        with self._cond:
            self.listings += 1
            self._waiters -= {w for w in self._waiters if w.once and w.seen < seq}
            for w in self._waiters:
                if w.seen < seq:  # this listing answers it: its next look is scheduled from now
                    w.due = taken + w.delay
                    w.delay = min(w.delay * w.factor, w.cap)
                    if error is not None:
                        w.error = error
            if error is None and (self._latest is None or seq > self._latest.seq):
                self._latest = Snapshot(seq, items, len(items) < self.page_limit, taken)
            self._cond.notify_all()

    def close(self, join_timeout: float = 5.0) -> None:
        """Stop listing for good; waits still running raise, later ones too."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
            self._due.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout)  # a listing in flight may hold it up to api_timeout; it is a daemon

    @property
    def waiting(self) -> int:
        """How many waits (and expectations not yet answered) there are now."""
        with self._cond:
            return len(self._waiters)

    @property
    def polling(self) -> bool:
        """Whether the listing thread is alive (it ends ``linger`` seconds after the last waiter)."""
        with self._cond:
            return self._thread is not None


_CANCELLED = object()
_TIMEOUT = object()
_CLOSED = object()
