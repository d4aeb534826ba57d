"""Retry a store transaction on transient database errors, so clients never see them as 500.

PostgreSQL: serialization failure (40001), deadlock (40P01), lock not available (55P03).
SQLite: "database is locked"/"busy" after the busy timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from lablease.store.errors import InvalidRequest, Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
ATTEMPTS = 12


def is_transient(exc: BaseException) -> bool:
    """True for errors that a fresh attempt of the same transaction can succeed after."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in TRANSIENT_SQLSTATES:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def _log_retry(state) -> None:  # noqa: ANN001
    exc = state.outcome.exception() if state.outcome else None
    log.info("store retry attempt=%d error=%s", state.attempt_number, type(getattr(exc, "orig", exc)).__name__)


def run_with_retry(fn: Callable[[], T]) -> T:
    """Run ``fn`` (one whole transaction) and retry it on transient errors; else 503 Unavailable."""
    try:
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_random_exponential(multiplier=0.002, max=0.2),
            before_sleep=_log_retry,
            reraise=False,
        ):
            with attempt:
                return fn()
    except (DataError, OverflowError) as exc:
        # A value the database cannot hold (a NUL in a name, a number out of range): the
        # request is at fault, not the server.
        detail = str(getattr(exc, "orig", exc)).splitlines()[0] if str(getattr(exc, "orig", exc)) else "out of range"
        raise InvalidRequest(f"a value was refused by the database: {detail}") from None
    except RetryError as exc:
        log.warning("store gave up after retries error=%s", exc.last_attempt.exception())
        raise Unavailable("encountered a DB error; please retry") from None
    except (OperationalError, InterfaceError) as exc:
        # The database is down, unreachable or dropped the connection: the request is not at fault
        # and may succeed later, so 503 (as after retries), not a 500. Not retried here: a dropped
        # COMMIT may have been applied, and repeating a lock_many would then lock twice.
        log.error("store database failure error=%s: %s", type(exc.orig).__name__,
                  (str(exc.orig).splitlines() or [""])[0])
        raise Unavailable("encountered a DB error; please retry") from None
    raise AssertionError("unreachable")  # pragma: no cover
