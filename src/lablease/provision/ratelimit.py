"""One gate per provider in front of every API call: spacing, and a shared deadline after a rate limit.

Why a gate and not a sleep per thread: the cloud's limit is per account, so a Retry-After told to
one thread holds every thread back (one deadline for the provider), and when that deadline passes
the threads must not all retry at the same instant. A thundering herd would be refused again at
once, each refusal resetting the deadline, and the account would spend its allowance on 429s.

So after a rate-limit answer the gate hands out start slots one at a time, ``pace`` seconds apart
(plus a little jitter, so that several processes on one account do not march in step). The pace is
learned from what the cloud just accepted: when the gate opens, the answers to the calls sent before
each refusal are in, and the most calls the account accepted in one Retry-After window before a
refused one is its limit; the gate paces at ``headroom`` of that. (Until then, for callers that come
while it is closed, a first guess counts every call started in that window.) With no refusal for a
while the pace relaxes again (``recover`` per second), so a pace learned while another client shared
the account does not stay slow for ever. Without refusals and with ``min_interval`` 0 the gate
never waits.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class RateLimiter:
    """Thread-safe per-provider gate: minimum spacing, a shared deadline, and a paced release after it.

    ``acquire()`` before every call; then ``done()`` when the cloud answered it (anything but a rate
    limit), or ``pause(retry_after)`` when it refused it for its rate limit.
    """

    def __init__(self, min_interval: float = 0.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, headroom: float = 0.9, recover: float = 0.05,
                 jitter: float = 0.1, rng: random.Random | None = None):
        self.min_interval = max(0.0, min_interval)
        self.headroom = headroom  # send at this fraction of the rate the cloud accepted
        self.recover = recover  # fraction the learned pace relaxes per second without a refusal
        self.jitter = jitter  # up to this fraction of the pace added to a slot
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._next = 0.0  # earliest start of the next slot
        self._deadline = 0.0  # no call starts before this (the latest Retry-After)
        self._pace = 0.0  # learned seconds between starts after a refusal; 0 = none learned
        self._paced_at = 0.0  # when the pace was learned (it relaxes from then on)
        self._opened_at = float("-inf")  # when the gate last opened after a refusal
        self._starts: collections.deque[float] = collections.deque(maxlen=4096)  # recent start times
        self._accepted: collections.deque[float] = collections.deque(maxlen=4096)  # starts of answered calls
        self._refused: list[tuple[float, float]] = []  # (start, Retry-After) of refusals not yet learned from
        self._mine = threading.local()  # the start time of this thread's last call

    def acquire(self) -> float:
        """Block until this caller's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            if self._refused and now >= self._deadline - 1e-3:  # the gate opens: the answers are in
                self._learn(now)
            pace = self._current_pace(now)
            start = max(now, self._next, self._deadline)
            if self._pace > 0 and start > now:  # a learned pace only: the configured spacing stays exact
                start += self._rng.uniform(0.0, self.jitter * pace)
            self._next = start + pace
            self._starts.append(start)
        self._mine.started = start
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return wait

    def done(self) -> None:
        """This thread's last call was answered, not refused for the rate: the account allowed it."""
        started = getattr(self._mine, "started", None)
        if started is not None:
            with self._lock:
                self._accepted.append(started)

    def pause(self, seconds: float) -> float:
        """The cloud refused this thread's last call for ``seconds`` (Retry-After): hold every caller back
        until then and learn a pace from what it accepted; returns the seconds until the gate opens."""
        with self._lock:
            now = self._clock()
            window = max(0.0, seconds)
            same_episode = now < self._deadline
            self._deadline = max(self._deadline, now + window)
            refused = getattr(self._mine, "started", now)
            if window > 0:
                # First guess, for callers that come while the gate is closed: every call started in the
                # window before the refused one. Herd members of one burst each see a different count
                # before them: the slowest guess wins. _learn() replaces it when the gate opens.
                started = sum(1 for t in self._starts if refused - window <= t < refused)
                guess = window / (self.headroom * max(1, started))
                if same_episode:
                    self._pace = max(guess, self._pace)
                else:  # refused while paced: slower than that pace, whatever the count says
                    paced = self._current_pace(now)
                    self._pace = max(guess, self.min_interval, 1.5 * paced if self._pace > 0 else 0.0)
                self._paced_at = now
                self._refused.append((refused, window))
            self._next = max(self._next, self._deadline)
            return self._deadline - now

    def _learn(self, now: float) -> None:
        """The pace from the refusals of the episode that just ended: the highest rate the account accepted
        in the Retry-After window before one of them, at ``headroom``. Only the part of a window after the
        gate last opened counts (while it was closed nothing was sent); a refusal that came too soon after
        the opening to say anything leaves the guess of ``pause()`` in place."""
        rates = []
        for start, window in self._refused:
            open_for = min(window, start - self._opened_at)
            if open_for >= 0.25 * window:
                rates.append(sum(1 for t in self._accepted if start - open_for <= t < start) / open_for)
        rate = max(rates, default=0.0)
        refusals = len(self._refused)
        self._refused.clear()
        self._opened_at = now
        if rate > 0:
            self._pace = max(self.min_interval, 1.0 / (self.headroom * rate))
            self._paced_at = now
        log.info("rate limit gate opens refusals=%d accepted_rate=%.1f/s pace=%.3fs", refusals, rate, self._pace)

    def _current_pace(self, now: float) -> float:
        """The learned pace, relaxed for the time since it was learned, never below ``min_interval``."""
        if self._pace <= 0:
            return self.min_interval
        relaxed = self._pace * (1.0 - self.recover) ** max(0.0, now - self._paced_at)
        if relaxed <= self.min_interval or relaxed < 1e-4:
            self._pace = 0.0  # relaxed back to the configured spacing: forget it
            return self.min_interval
        return relaxed
