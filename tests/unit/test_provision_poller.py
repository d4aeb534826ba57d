"""Shared polls: one listing answers every waiter; only listings begun after a wait's mark answer it;
cancel and close end waits even while a listing hangs; the thread lists only while someone waits.

Counts listings, never seconds: every assertion is about how many requests were made or what a
wait saw. Blocking listings (an Event the test releases) stand in for slow or stuck clouds.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.poller import SharedListing

FAST = {"first": 0.001, "cap": 0.005}
LONG = 60.0  # a timeout no passing test reaches


@dataclass
class Item:
    id: str
    state: str


class Cloud:
    """Listings of items that become "ready" after ``ready_after`` listings; optionally held until released."""

    def __init__(self, ids, ready_after: int = 3):
        self.ids = list(ids)
        self.ready_after = ready_after
        self.calls = 0
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail: BaseException | None = None

    def load(self):
        with self.lock:
            self.calls += 1
            n = self.calls
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(LONG)
        if self.fail is not None:
            raise self.fail
        return [Item(i, "ready" if n >= self.ready_after else "pending") for i in self.ids]


def ready(rid):
    def check(snap):
        item = snap.items.get(rid)
        return item if item is not None and item.state == "ready" else None
    return check


def _in_threads(fn, args):
    results, errors = {}, {}

    def run(a):
        try:
            results[a] = fn(a)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors[a] = exc

    threads = [threading.Thread(target=run, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LONG)
    assert not any(t.is_alive() for t in threads)
    return results, errors


def test_one_listing_per_interval_answers_fifty_waiters_instead_of_one_request_each():
    ids = [f"s{i}" for i in range(50)]
    cloud = Cloud(ids, ready_after=3)
    cloud.gate = threading.Event()  # the first listing hangs until all fifty wait
    listing = SharedListing("servers", cloud.load, linger=0.0)
    since = listing.mark()
    threads = [_start(lambda rid=rid: listing.wait(ready(rid), since=since, timeout=LONG, on_timeout=TimeoutError,
                                                   stage=Stage.BOOT, node=rid, **FAST)) for rid in ids]
    _until(lambda: listing.waiting == 50)
    cloud.gate.set()
    for thread, _ in threads:
        thread.join(LONG)
    assert [box["result"].id for _, box in threads] == ids
    # Per-node polling would have cost 50 x 3 requests. Answered by the same listing, the waiters
    # schedule their next look from it alike, so they stay in step: three listings in all.
    assert cloud.calls == 3


def test_a_listing_begun_before_the_mark_does_not_answer_the_wait_a_later_one_does():
    cloud = Cloud(["v1"], ready_after=1)
    cloud.gate = threading.Event()
    listing = SharedListing("volumes", cloud.load, linger=0.0)
    seen = []
    # An earlier wait starts a listing, which hangs in the cloud...
    early, _ = _start(lambda: listing.wait(ready("v1"), since=listing.mark(), timeout=LONG, on_timeout=TimeoutError,
                                           stage=Stage.VOLUME, node="a", **FAST))
    assert cloud.entered.wait(LONG)
    mark = listing.mark()  # ...and then an action (say an attach) happens, and a wait on it begins.

    def check(snap):
        seen.append(snap.seq)
        return snap
    later, box = _start(lambda: listing.wait(check, since=mark, timeout=LONG, on_timeout=TimeoutError,
                                             stage=Stage.VOLUME, node="b", **FAST))
    cloud.gate.set()
    early.join(LONG)
    later.join(LONG)
    assert seen and all(seq > mark for seq in seen), (seen, mark)
    assert box["result"].seq == mark + 1 and cloud.calls == 2


def test_a_fresh_enough_listing_in_hand_answers_at_once_without_a_request():
    cloud = Cloud(["s1", "s2"], ready_after=1)
    listing = SharedListing("servers", cloud.load, linger=LONG)
    since = listing.mark()
    listing.wait(ready("s1"), since=since, timeout=LONG, on_timeout=TimeoutError, stage=Stage.BOOT, node="n1", **FAST)
    assert cloud.calls == 1
    # s2 was created before that listing began: the listing already says it is ready.
    assert listing.wait(ready("s2"), since=since, timeout=LONG, on_timeout=TimeoutError, stage=Stage.BOOT,
                        node="n2", **FAST).id == "s2"
    assert cloud.calls == 1
    listing.close()


def test_cancel_ends_a_wait_while_the_listing_still_hangs_in_the_cloud():
    cloud = Cloud(["s1"])
    cloud.gate = threading.Event()
    listing = SharedListing("servers", cloud.load, linger=0.0, cancel_slice=0.01)
    cancel = threading.Event()
    thread, box = _start(lambda: listing.wait(ready("s1"), since=0, timeout=LONG, on_timeout=TimeoutError,
                                              stage=Stage.BOOT, node="n1", cancel=cancel, **FAST))
    assert cloud.entered.wait(LONG)
    cancel.set()
    thread.join(LONG)
    assert not thread.is_alive() and not cloud.gate.is_set()  # it did not wait for the listing to come back
    error = box["error"]
    assert isinstance(error, ProvisionError) and error.kind == "cancelled" and error.node == "n1"
    cloud.gate.set()


def test_a_failed_listing_fails_each_wait_under_its_own_stage_and_node():
    cloud = Cloud(["a", "b"])
    cloud.fail = ProvisionError(Stage.BOOT, None, "list servers: gave up after 120s of retries (transient): 500",
                                kind="transient")
    listing = SharedListing("servers", cloud.load, linger=0.0)
    _, errors = _in_threads(lambda rid: listing.wait(ready(rid), since=0, timeout=LONG, on_timeout=TimeoutError,
                                                     stage=Stage.DESTROY, node=rid, **FAST), ["a", "b"])
    assert {rid: (e.stage, e.node, e.kind) for rid, e in errors.items()} == {
        "a": (Stage.DESTROY, "a", "transient"), "b": (Stage.DESTROY, "b", "transient")}
    assert all("gave up" in e.message for e in errors.values())


def test_nothing_is_listed_while_nobody_waits_and_the_thread_ends():
    cloud = Cloud(["s1"], ready_after=2)
    listing = SharedListing("servers", cloud.load, linger=0.0)
    assert not listing.polling and cloud.calls == 0
    listing.wait(ready("s1"), since=0, timeout=LONG, on_timeout=TimeoutError, stage=Stage.BOOT, node="n", **FAST)
    calls = cloud.calls
    _until(lambda: not listing.polling)
    assert cloud.calls == calls
    # It starts again for the next waiter.
    listing.wait(ready("s1"), since=listing.mark(), timeout=LONG, on_timeout=TimeoutError, stage=Stage.BOOT,
                 node="n", **FAST)
    assert cloud.calls == calls + 1


def test_close_fails_the_waits_still_running_and_every_later_one():
    cloud = Cloud(["s1"], ready_after=10**9)
    listing = SharedListing("servers", cloud.load, linger=LONG)
    thread, box = _start(lambda: listing.wait(ready("s1"), since=0, timeout=LONG, on_timeout=TimeoutError,
                                              stage=Stage.BOOT, node="n1", **FAST))
    _until(lambda: cloud.calls >= 2)
    listing.close()
    thread.join(LONG)
    assert isinstance(box["error"], ProvisionError) and "closed" in box["error"].message
    assert not listing.polling
    with pytest.raises(ProvisionError, match="closed"):
        listing.wait(ready("s1"), since=0, timeout=LONG, on_timeout=TimeoutError, stage=Stage.BOOT, node="n2", **FAST)


def test_a_wait_whose_item_never_comes_times_out_with_its_own_error():
    cloud = Cloud(["s1"], ready_after=10**9)
    listing = SharedListing("servers", cloud.load, linger=0.0)
    with pytest.raises(TimeoutError, match="s1 never ran"):
        listing.wait(ready("s1"), since=0, timeout=0.05, on_timeout=lambda: TimeoutError("s1 never ran"),
                     stage=Stage.BOOT, node="n", **FAST)


def test_many_threads_waiting_and_leaving_at_random_all_finish_with_a_bounded_number_of_listings():
    ids = [f"s{i}" for i in range(40)]
    cloud = Cloud(ids, ready_after=1)
    listing = SharedListing("servers", cloud.load, linger=0.0)

    def one(rid):
        # Each waits twice, the second time on a later mark: like a boot wait, then an attach wait.
        listing.wait(ready(rid), since=listing.mark(), timeout=LONG, on_timeout=TimeoutError, stage=Stage.BOOT,
                     node=rid, **FAST)
        return listing.wait(ready(rid), since=listing.mark(), timeout=LONG, on_timeout=TimeoutError,
                            stage=Stage.VOLUME, node=rid, **FAST)

    results, errors = _in_threads(one, ids)
    assert not errors and len(results) == 40
    assert cloud.calls < 2 * 40  # shared: fewer listings than the waits that were answered


def _start(fn):
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _until(condition, timeout: float = LONG) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition never held")


def test_an_expected_listing_is_taken_with_no_thread_waiting_and_answers_the_later_wait_at_once():
    cloud = Cloud(["v1"], ready_after=1)
    listing = SharedListing("volumes", cloud.load, linger=0.0)
    mark = listing.mark()  # an attach was asked for
    listing.expect(since=mark, first=0.001)
    _until(lambda: cloud.calls == 1 and not listing.polling)  # listed once, then nobody waits: the thread ended
    assert listing.wait(ready("v1"), since=mark, timeout=LONG, on_timeout=TimeoutError, stage=Stage.VOLUME,
                        node="n", **FAST).id == "v1"
    assert cloud.calls == 1
    _until(lambda: not listing.polling)
    listing.expect(since=mark, first=0.001)  # already answered by the listing in hand: nothing to take
    assert not listing.polling and cloud.calls == 1
