"""How the lifecycle looks at servers and volumes while it waits: from the shared listing, or one GET each.

A ``Watch`` is one kind of resource (servers or volumes) of one provider. Its ``wait`` hands the
lifecycle's check a ``View`` whose ``find(id)`` answers from the latest shared listing
(``poller.SharedListing``); only where a listing cannot tell does it ask the cloud for that one
resource:

* something the wait expects to exist is missing from the listing (a server "disappeared" while
  booting): one GET confirms it before the attempt is failed for it;
* something the wait expects to go is missing from a listing that may be a truncated page
  (``PAGE_LIMIT`` items or more): one GET confirms it is gone. A shorter listing holds every
  resource of the project (Nova and Cinder answer listings and GETs from the same rows), so there
  what is missing is gone, with no request.

Without a shared listing (``listing=None``: an injected adapter that cannot promise its listings
show what its GETs show) every look is a GET, paced by ``waiting.poll`` as before.
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, Protocol, TypeVar

from lablease.provision.calls import CloudCaller
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.poller import SharedListing, Snapshot
from lablease.provision.waiting import cancelled, poll

T = TypeVar("T")
R = TypeVar("R")


class View(Protocol[T]):
    def find(self, rid: str) -> T | None:
        """The resource ``rid``, or None when the cloud no longer has it."""


class _Listed(Generic[T]):
    def __init__(self, snapshot: Snapshot[T], get: Callable[[str], T | None], absent_is_gone: bool):
        self._snapshot, self._get, self._gone = snapshot, get, absent_is_gone

    def find(self, rid: str) -> T | None:
        item = self._snapshot.items.get(rid)
        if item is not None:
            return item
        if self._gone and self._snapshot.complete:
            return None
        return self._get(rid)


class _Fetched(Generic[T]):
    def __init__(self, get: Callable[[str], T | None]):
        self._get = get

    def find(self, rid: str) -> T | None:
        return self._get(rid)


class Watch(Generic[T]):
    """Waits on one kind of resource; shared when ``listing`` is given, else one GET per look."""

    def __init__(self, kind: str, caller: CloudCaller, get: Callable[[str], T | None],
                 listing: SharedListing[T] | None, list_all: Callable[[], list[T]]):
        self.kind = kind
        self._caller = caller
        self._get = get
        self._list_all = list_all
        self.listing = listing

    def mark(self) -> int:
        """Take right after an action; pass it as ``since`` to the wait on that action."""
        return self.listing.mark() if self.listing is not None else 0

    def expect(self, since: int, first: float) -> None:
        """Ask for a listing begun after ``since`` in about ``first`` seconds, for a wait that comes later."""
        if self.listing is not None:
            self.listing.expect(since=since, first=first)

    def wait(self, check: Callable[[View[T]], R | None], *, since: int, stage: Stage, node: str | None,
             timeout: float, on_timeout: Callable[[], Exception], absent_is_gone: bool = False,
             first: float = 0.2, cap: float = 5.0, cancel: threading.Event | None = None,
             on_cancel: Callable[[], Exception] | None = None) -> R:
        """``check(view)`` until it returns a value; ``absent_is_gone`` when the wait is for a deletion."""

        def get(rid: str) -> T | None:
            return self._caller.call(stage, node, lambda: self._get(rid), what=f"get {self.kind[:-1]} {rid}")

        if self.listing is None:
            return poll(lambda: check(_Fetched(get)), timeout, on_timeout, first=first, cap=cap, cancel=cancel,
                        on_cancel=on_cancel or (lambda: cancelled(stage, node, f"waiting on {self.kind}")))
        return self.listing.wait(lambda snap: check(_Listed(snap, get, absent_is_gone)), since=since,
                                 timeout=timeout, on_timeout=on_timeout, stage=stage, node=node, first=first,
                                 cap=cap, cancel=cancel, on_cancel=on_cancel)

    def fresh(self, stage: Stage, node: str | None, timeout: float) -> list[T]:
        """Everything of this kind, from a listing begun now (shared with whoever else waits)."""
        if self.listing is None:
            return self._caller.call(stage, node, self._list_all, what=f"list {self.kind}")
        return self.listing.wait(lambda snap: list(snap.items.values()), since=self.listing.mark(), timeout=timeout,
                                 on_timeout=lambda: ProvisionError(stage, node, f"no listing of {self.kind} "
                                                                   f"within {timeout:.0f}s"),
                                 stage=stage, node=node, first=0.0)


def shared_listing(kind: str, caller: CloudCaller, load: Callable[[], list[T]], **kwargs) -> SharedListing[T]:
    """A SharedListing whose listing goes through ``caller`` (rate spacing, retries, named errors)."""
    # The stage is a placeholder: a failed listing is raised again under each waiter's own stage and node.
    return SharedListing(kind, lambda: caller.call(Stage.BOOT, None, load, what=f"list {kind}"), **kwargs)
