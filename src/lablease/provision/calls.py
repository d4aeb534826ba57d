"""Every cloud call goes through here: rate spacing, bounded retries, errors named by stage.

Rate limits (413/429) wait for Retry-After (or back off when the cloud gives none); 5xx and
connection errors back off exponentially with jitter; quota, credential and other refusals
fail at once. The whole retry loop of one call is bounded by ``max_time`` seconds. A cloud that
refuses connections is tried a few times only (its kind's ``max_tries``), and once a call gave up
on it, later calls try once until one succeeds: an outage fails fast instead of piling up waits.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_before_delay, wait_random_exponential
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from lablease.provision.adapters.base import ErrorInfo, ErrorKind
from lablease.provision.errors import ProvisionError, Stage
from lablease.provision.ratelimit import RateLimiter

log = logging.getLogger(__name__)
T = TypeVar("T")

# Told of every request sent to the cloud (each retry too): what, seconds, error kind or None.
CallObserver = Callable[[str, float, str | None], None]
# Told of every repeat before its pause: stage, node (None for a provider-wide call), one line of words.
RetryObserver = Callable[[Stage, str | None, str], None]
# Pauses between the tries of an unreachable cloud (refused connections fail at once, so these are the time).
UNREACHABLE_PAUSES = (1.0, 2.0, 4.0, 4.0)


class _CloudWait(wait_base):
    """Retry-After when the cloud gave one, else exponential backoff with full jitter."""

    def __init__(self, classify: Callable[[BaseException], ErrorInfo], limiter: RateLimiter,
                 base: float, cap: float):
        self._classify = classify
        self._limiter = limiter
        self._backoff = wait_random_exponential(multiplier=base, max=cap)

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        info = self._classify(exc) if exc else None
        if info and info.kind is ErrorKind.UNREACHABLE:
            return UNREACHABLE_PAUSES[min(retry_state.attempt_number, len(UNREACHABLE_PAUSES)) - 1]
        if info and info.kind is ErrorKind.RATE_LIMIT and info.retry_after is not None:
            # The limit is per account: the provider's gate holds every thread back until one deadline,
            # then lets them through paced (ratelimit.py); this thread sleeps until the gate opens.
            return self._limiter.pause(info.retry_after)
        return self._backoff(retry_state)


class _TriesOfKind(stop_base):
    """Stop when the last error's kind allows no more tries (``max_tries``; one only while ``down()``)."""

    def __init__(self, classify: Callable[[BaseException], ErrorInfo], down: Callable[[], bool]):
        self._classify = classify
        self._down = down

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if exc is None:
            return False
        kind = self._classify(exc).kind
        tries = 1 if kind is ErrorKind.UNREACHABLE and self._down() else kind.rule.max_tries
        return bool(tries) and retry_state.attempt_number >= tries


class CloudCaller:
    """Runs adapter calls for one provider with spacing, retries and stage-named errors.

    ``on_retry`` is told of every repeat (the lab shows them in its progress stream); ``trouble_at`` is
    when a call last gave up because the cloud refused the credentials or could not be reached (the lab's
    preflight checks again after that).
    """

    def __init__(self, classify: Callable[[BaseException], ErrorInfo], limiter: RateLimiter, *,
                 max_time: float = 120.0, backoff_base: float = 0.5, backoff_cap: float = 30.0,
                 sleep: Callable[[float], None] | None = None, on_call: CallObserver | None = None,
                 on_retry: RetryObserver | None = None):
        self.classify = classify
        self.limiter = limiter
        self.max_time = max_time
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._on_call = on_call
        self._on_retry = on_retry
        self.unreachable = False  # a call gave up on an unreachable cloud and none succeeded since
        self.trouble_at = 0.0

    def _note(self, error: BaseException | None) -> None:
        """Keep the outage flag and the time of the last credential or connection trouble up to date."""
        kind = None if error is None else self.classify(error).kind
        if kind in (ErrorKind.UNREACHABLE, ErrorKind.AUTH):
            self.trouble_at = time.monotonic()
        self.unreachable = kind is ErrorKind.UNREACHABLE  # any answer, even a refusal, means it is reachable

    def call(self, stage: Stage, node: str | None, fn: Callable[[], T], *, what: str = "",
             idempotent: bool = True) -> T:
        """Call ``fn`` until it succeeds, fails for good, or ``max_time`` runs out.

        A call that creates something (``idempotent=False``) is repeated only after a rate-limit
        answer, which means the cloud did not act; after a 5xx or a lost connection the cloud may
        have created it, so the error goes up (retryable) and the attempt's rollback finds it by tag.
        """

        def attempt() -> T:
            self.limiter.acquire()
            observer = self._on_call
            started = time.monotonic()
            try:
                result = fn()
            except Exception as exc:
                kind = self.classify(exc).kind
                if kind is not ErrorKind.UNREACHABLE:
                    self.unreachable = False  # the cloud answered
                if kind is not ErrorKind.RATE_LIMIT:
                    self.limiter.done()  # answered: the account let it through (the gate learns its rate)
                if observer is not None:
                    self._observe(observer, what, time.monotonic() - started, exc)
                raise
            self.limiter.done()
            self.unreachable = False
            if observer is not None:
                self._observe(observer, what, time.monotonic() - started, None)
            return result

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            info = self.classify(exc) if exc else None
            log.warning("cloud call retry stage=%s node=%s call=%s try=%d kind=%s wait=%.2f error=%s",
                        stage.value, node, what, state.attempt_number, info.kind.value if info else "?",
                        state.upcoming_sleep, info.message if info else exc)
            if self._on_retry is not None and info is not None:
                self._tell_retry(stage, node, info, state)

        def repeat(exc: BaseException) -> bool:
            # A rate-limit answer means the cloud did not act: even a create is repeated after one.
            # An unreachable cloud never got the request: it is repeated too.
            kind = self.classify(exc).kind
            return kind.rule.repeat_call and (idempotent or kind in (ErrorKind.RATE_LIMIT, ErrorKind.UNREACHABLE))

        kwargs = dict(
            stop=stop_before_delay(self.max_time) | _TriesOfKind(self.classify, lambda: self.unreachable),
            wait=_CloudWait(self.classify, self.limiter, self.backoff_base, self.backoff_cap),
            retry=retry_if_exception(repeat),
            before_sleep=before_sleep,
            reraise=True,
        )
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        try:
            return Retrying(**kwargs)(attempt)
        except ProvisionError:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error becomes a named ProvisionError
            self._note(exc)
            raise self.to_error(stage, node, exc, what, idempotent=idempotent) from exc

    def _tell_retry(self, stage: Stage, node: str | None, info: ErrorInfo, state: RetryCallState) -> None:
        """``on_retry`` with one line: ``cloud unreachable, retry 2 of 5 in 4 s``; a broken hook is only logged."""
        tries = info.kind.rule.max_tries
        of = f" of {tries}" if tries else ""
        words = "cloud unreachable" if info.kind is ErrorKind.UNREACHABLE else f"cloud call failed ({info.kind.value})"
        try:
            self._on_retry(stage, node, f"{words}, retry {state.attempt_number + 1}{of} in "  # type: ignore[misc]
                                        f"{state.upcoming_sleep:.0f} s")
        except Exception:  # noqa: BLE001 - progress must not break provisioning
            log.exception("cloud call retry observer failed")

    def _observe(self, observer: CallObserver, what: str, seconds: float, exc: BaseException | None) -> None:
        """Tell ``observer`` of one request; a broken observer is logged, never fails the call."""
        try:
            observer(what, seconds, None if exc is None else self.classify(exc).kind.value)
        except Exception:  # noqa: BLE001 - metrics must not break provisioning
            log.exception("cloud call observer failed call=%s", what)

    def to_error(self, stage: Stage, node: str | None, exc: BaseException, what: str = "",
                 idempotent: bool = True) -> ProvisionError:
        """The ProvisionError of ``exc``: its kind is the adapter's (``classify``), its words follow that kind's rule."""
        info = self.classify(exc)
        prefix = f"{what}: " if what else ""
        if info.kind is ErrorKind.UNREACHABLE:  # one short line: no library text, no retry count
            return ProvisionError(stage, node, info.kind.rule.describe(info.message), kind=info.kind)
        if not idempotent and info.kind is ErrorKind.TRANSIENT:
            return ProvisionError(stage, node, f"{prefix}{info.message} (not repeated: the cloud may have acted on it; "
                                  "the attempt is rolled back)", kind=ErrorKind.NOT_REPEATED)
        if info.kind is ErrorKind.AUTH:
            stage = Stage.AUTH
        # Transient errors already had api_retry_time of retries; a fresh attempt would only
        # multiply the wait, and refusals will not change: neither is retried at attempt level.
        text = info.kind.rule.describe(info.message, seconds=self.max_time, kind=info.kind.value)
        return ProvisionError(stage, node, prefix + text, kind=info.kind)
