"""The provider's rate-limit gate: after a 429 its threads retry spread out, not all at the deadline."""

from __future__ import annotations

import random
import threading

from lablease.provision.ratelimit import RateLimiter


class FrozenClock:
    """A clock the test moves by hand; the gate's sleeps only record (threads share one time)."""

    def __init__(self, now: float = 100.0):
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def _in_own_thread(fn) -> None:
    """Run ``fn`` in a fresh thread: the gate remembers each thread's last start, as each worker has its own."""
    t = threading.Thread(target=fn)
    t.start()
    t.join()


def test_after_a_retry_after_the_herd_is_released_paced_at_what_the_cloud_accepted():
    # 20 worker threads call at once; the cloud accepts 5 per second and refuses 15 with Retry-After: 1.
    clock = FrozenClock()
    gate = RateLimiter(0, clock=clock, sleep=clock.sleep, rng=random.Random(1))
    sent = threading.Barrier(21)  # every call is out before the first answer comes back
    answered = threading.Barrier(21)
    opened = threading.Barrier(21)
    retries: list[float] = []
    lock = threading.Lock()

    def worker(refused: bool, went: threading.Event) -> None:
        gate.acquire()
        went.set()
        sent.wait()
        if refused:
            gate.pause(1.0)  # the 429 answer; every refused thread is told the same Retry-After
        else:
            gate.done()  # answered
        answered.wait()
        opened.wait()  # the test moved the clock past the deadline in between
        if refused:
            waited = gate.acquire()
            with lock:
                retries.append(clock.now + waited)

    threads = []
    for i in range(20):  # one after another, a millisecond apart, so "accepted" are the first five
        went = threading.Event()
        threads.append(threading.Thread(target=worker, args=(i >= 5, went)))
        threads[-1].start()
        went.wait()
        clock.now += 0.001
    sent.wait()
    answered.wait()
    deadline = clock.now + 1.0  # every Retry-After ran from about now
    clock.now = deadline + 0.01  # every refused thread slept until the gate opened
    opened.wait()
    for t in threads:
        t.join()

    retries.sort()
    assert len(retries) == 15
    assert retries[0] >= deadline - 1e-9  # nobody goes before the deadline
    gaps = [b - a for a, b in zip(retries, retries[1:])]
    assert min(gaps) > 0.19  # spread: one start every ~1/(0.9 * 5) s, never two together
    assert max(gaps) < 0.25  # ...and no slower: the pace is what the cloud accepted (5/s), at 90 %
    # No one-second window holds more retries than the cloud accepted in one: no second 429 storm.
    assert max(sum(1 for s in retries if r <= s < r + 1.0) for r in retries) <= 5


def test_without_a_refusal_the_gate_never_waits():
    clock = FrozenClock()
    gate = RateLimiter(0, clock=clock, sleep=clock.sleep)
    assert all(gate.acquire() == 0 for _ in range(50))


def test_min_interval_spaces_calls_and_a_retry_after_holds_everyone():
    clock = FrozenClock()
    gate = RateLimiter(0.5, clock=clock, sleep=clock.sleep, jitter=0)
    assert [gate.acquire() for _ in range(3)] == [0, 0.5, 1.0]  # frozen clock: each waits for its slot
    _in_own_thread(lambda: gate.pause(2.0))
    assert gate.acquire() >= 2.0


def test_the_learned_pace_relaxes_when_the_cloud_stops_refusing():
    clock = FrozenClock()
    gate = RateLimiter(0, clock=clock, sleep=clock.sleep, jitter=0)
    for _ in range(4):
        gate.acquire()
        clock.now += 0.01
    gate.pause(1.0)
    clock.now += 1.0
    assert gate.acquire() >= 0 and gate.acquire() > 0.2  # paced right after the deadline
    clock.now += 3600  # an hour without a refusal
    assert gate.acquire() == 0 and gate.acquire() == 0
