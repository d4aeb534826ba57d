"""Preflight: before a lock creates anything, the cloud takes lablease's credentials and the DNS service answers.

A wrong cloud password or a DNS service that is down would otherwise be found out only after
records were locked and servers booted. One check costs a token fetch (through the provider's
token cache, so usually no request at all) and one GET of the DNS service's ``/healthz``; a good
result is kept for ``ttl`` seconds, and dropped at once when a real call since saw the cloud refuse
the credentials or not answer (``CloudCaller.trouble_at``) or a launch failed at DNS (``forget``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Callable

from lablease.config.redact import redact_text
from lablease.provision.engine import Provisioner
from lablease.provision.errorkinds import ErrorKind
from lablease.provision.errors import ProvisionError

log = logging.getLogger(__name__)

_HTTP_CODE = re.compile(r"\b(401|403)\b")


class Preflight:
    """The checks of one provider (``prov``) and its DNS client; ``problem()`` says why a lock must wait, or None."""

    def __init__(self, machine_type: str, prov: Provisioner, *, ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.machine_type = machine_type
        self.prov = prov
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._good_at: float | None = None  # when the last check passed

    def forget(self) -> None:
        """Check again before the next lock (a real call just failed in a way a check would see)."""
        self._good_at = None

    def problem(self) -> str | None:
        """None when the cloud and the DNS service are known good; else one line saying what is wrong and
        what to do. Runs in a worker thread (it may make two quick requests)."""
        with self._lock:  # concurrent locks share one check
            good_at = self._good_at
            if good_at is not None and self._clock() - good_at < self.ttl and \
                    self.prov.caller.trouble_at < good_at:
                return None
            started = self._clock()
            problem = self._cloud_problem() or self._dns_problem()
            self._good_at = None if problem else started
        if problem:
            log.warning("preflight refused a lock type=%s reason=%s", self.machine_type, problem)
        return problem

    def _cloud_problem(self) -> str | None:
        try:
            self.prov.check_access()
        except ProvisionError as exc:
            t = self.machine_type
            if exc.kind is ErrorKind.AUTH:
                code = _HTTP_CODE.search(exc.message)
                said = f"HTTP {code.group(1)}" if code else exc.message[:120]
                return f"cloud {t} refused lablease's credentials ({said}): check driver_args of libcloud.providers.{t}"
            if exc.kind is ErrorKind.UNREACHABLE:
                return f"cloud {t} is unreachable ({exc.message[:160]}); retry when it answers again"
            # Anything else (a 5xx of the identity service) is left to the launch's own retries.
            log.warning("preflight: the cloud's check failed, locking anyway type=%s error=%s", t, exc.message)
        return None

    def _dns_problem(self) -> str | None:
        dns: Any = self.prov.dns_client
        if dns is None:
            return None
        url = redact_text(getattr(dns, "base_url", "?"))
        try:
            dns.check()
        except Exception as exc:  # noqa: BLE001 - DNSClientError, or anything its HTTP library let through
            if getattr(exc, "sent", True) is False:
                return f"the DNS service at {url} is unreachable: connection refused"
            return f"the DNS service at {url} is failing: {redact_text(str(exc))[:160]}"
        return None


# Failures a preflight check would see: the next lock checks again instead of trusting the cached result.
RECHECK = frozenset({ErrorKind.AUTH, ErrorKind.UNREACHABLE, ErrorKind.DNS})
