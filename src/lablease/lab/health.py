"""A provider's health as its warm pool sees it, and the backoff of the pool's refills after failures.

A refill that fails (quota used up, credentials refused, the cloud unreachable) is not tried again
every few seconds: the next one waits ``base`` seconds, doubling per failure up to ``cap``, with
jitter, so a full quota sees about one create per step and several labs' pools do not retry in step.
A success resets both. The health (ok, quota, auth, outage, other) is the last failure's kind as
``errorkinds.RULES`` names it; ``/lab/status/``, ``/metrics`` and the dashboard show it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from tenacity import wait_exponential, wait_random_exponential

from lablease.provision.errorkinds import ErrorKind
from lablease.store.records import format_time, utcnow


class Health(StrEnum):
    """What the last refills of a provider say about its cloud."""

    OK = "ok"          # the last refill worked, or none has failed yet
    QUOTA = "quota"    # the cloud's quota is used up: refills wait until a node is freed or the quota raised
    AUTH = "auth"      # the cloud refused the credentials in driver_args
    OUTAGE = "outage"  # the cloud did not answer, or kept failing (5xx, timeouts, rate limits)
    OTHER = "other"    # anything else (no image for the OS, a refusal, a bug): see the message


def health_of(kind: ErrorKind | None) -> Health:
    """The health after a failure of ``kind`` (None: not a provisioning error, e.g. a bug)."""
    return Health(kind.rule.health) if kind is not None else Health.OTHER


class _Step(NamedTuple):
    """What tenacity's wait strategies read of a retry: the number of the failure being waited after."""

    attempt_number: int


class RefillBackoff:
    """Seconds to wait after the ``n``-th failure in a row: ``d/2 + uniform(0, d/2)``, ``d = min(cap, base·2^(n-1))``.

    Half fixed, half random ("equal jitter"), not full jitter: a wait never drops below half its step, so
    a full quota sees at most one refill per step, while the random half still spreads several pools.
    """

    def __init__(self, base: float = 2.0, cap: float = 300.0):
        self.base, self.cap = base, cap
        self._fixed = wait_exponential(multiplier=base / 2, max=cap / 2)
        self._jitter = wait_random_exponential(multiplier=base / 2, max=cap / 2)

    def step(self, failures: int) -> float:
        """The step ``d`` after ``failures`` failures in a row (0 before any)."""
        return 0.0 if failures <= 0 else min(self.cap, self.base * 2 ** (failures - 1))

    def wait(self, failures: int) -> float:
        """A jittered wait within [step/2, step] after ``failures`` failures in a row."""
        if failures <= 0:
            return 0.0
        step = _Step(failures)
        return self._fixed(step) + self._jitter(step)  # type: ignore[arg-type]  # tenacity reads attempt_number only


@dataclass(frozen=True)
class HealthSnapshot:
    """One provider's health at a moment: what ``/lab/status/`` and the metrics show."""

    machine_type: str
    state: Health
    since: datetime
    message: str | None
    failures: int
    next_refill: datetime | None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(state=self.state.value, since=format_time(self.since), next_refill=format_time(self.next_refill))
        return out


HealthObserver = Callable[[HealthSnapshot], None]


class ProviderHealth:
    """The health of one provider and when its pool may refill next; thread-safe.

    ``on_change`` (the lab's metrics) is told of every new snapshot, the first one included.
    """

    def __init__(self, machine_type: str, backoff: RefillBackoff, on_change: HealthObserver | None = None):
        self.machine_type = machine_type
        self.backoff = backoff
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state, self._since, self._message = Health.OK, utcnow(), None
        self._failures = 0
        self._not_before = 0.0  # time.monotonic() before which no refill starts
        self._next_wall: datetime | None = None
        self._tell(self.snapshot())

    @property
    def failures(self) -> int:
        """Failed refills in a row (0 after a success)."""
        return self._failures

    def may_refill(self) -> bool:
        """Whether the backoff after the last failure is over."""
        return time.monotonic() >= self._not_before

    def failed(self, kind: ErrorKind | None, message: str, round_of: int) -> float:
        """A refill failed; returns the seconds until the next. ``round_of`` is ``failures`` when the refill
        started: refills started together (one top-up of several nodes) count as one step."""
        state = health_of(kind)
        with self._lock:
            if round_of == self._failures:
                self._failures += 1
                wait = self.backoff.wait(self._failures)
                self._not_before = time.monotonic() + wait
                self._next_wall = utcnow() + timedelta(seconds=wait)
            if state != self._state:
                self._state, self._since = state, utcnow()
            self._message = message
            snap = self._snap()
        self._tell(snap)
        return max(0.0, self._not_before - time.monotonic())

    def succeeded(self) -> None:
        """A refill made a ready node: the cloud is fine again, the backoff starts over."""
        with self._lock:
            if self._state is Health.OK and self._failures == 0:
                return
            self._state, self._since, self._message = Health.OK, utcnow(), None
            self._failures, self._not_before, self._next_wall = 0, 0.0, None
            snap = self._snap()
        self._tell(snap)

    def snapshot(self) -> HealthSnapshot:
        with self._lock:
            return self._snap()

    def _snap(self) -> HealthSnapshot:
        pending = self._next_wall if time.monotonic() < self._not_before else None
        return HealthSnapshot(self.machine_type, self._state, self._since, self._message, self._failures, pending)

    def _tell(self, snap: HealthSnapshot) -> None:
        if self._on_change is not None:
            self._on_change(snap)
