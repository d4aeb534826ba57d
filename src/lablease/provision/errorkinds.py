"""The one error vocabulary: what kinds of failure there are and what each one means.

Every ``ProvisionError`` carries an ``ErrorKind``; the adapters' ``classify`` answers with one too.
``RULES`` below is the only place that says, for a kind, whether the cloud call is repeated,
whether a fresh create attempt can help, which HTTP status the lock API answers, the short
prefix put before the cloud's words and what a provider's health is called while failures of that
kind last (``/lab/status/``). Nothing else decides these.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ErrorKind(str, Enum):
    """What went wrong, in the words metrics, logs and tests use (the values are those of earlier releases)."""

    TRANSIENT = "transient"        # 5xx, connection reset, a dropped token: the call is repeated with backoff
    RATE_LIMIT = "rate_limit"      # 413/429 with or without Retry-After: wait, then repeat the call
    UNREACHABLE = "unreachable"    # connection refused, or the endpoint's name does not resolve: the request was
                                   # never sent; a few quick repeats, then the outage is reported
    QUOTA = "quota"                # quota exceeded: retrying cannot help
    AUTH = "auth"                  # the cloud refused the credentials: retrying cannot help
    NOT_FOUND = "not_found"        # the thing is gone (deletes treat this as success)
    FATAL = "fatal"                # anything else the cloud refused
    CONFIG = "config"              # no image, size or network matches the provider's settings and the request
    NOT_REPEATED = "not_repeated"  # a create lost to a 5xx or connection: not repeated, the attempt is rolled back
    CLOUD_ERROR = "error"          # a server or volume went to ERROR
    GONE = "gone"                  # a server or volume disappeared while being waited for
    TIMEOUT = "timeout"            # a wait ran out
    SSH_PORT = "ssh-port"          # nothing ever listened on the SSH port: a setting or firewall, not bad luck
    DNS = "dns"                    # the DNS service failed to register a name
    DNS_REFUSED = "dns_refused"    # the DNS service refused the name outright (4xx): nothing was registered
    LEFTOVER = "leftover"          # a rollback could not remove everything: no attempt goes on top of it
    CANCELLED = "cancelled"        # Provisioner.cancel(): never retried
    BUG = "bug"                    # an unexpected exception in lablease itself

    @property
    def rule(self) -> "KindRule":
        return RULES[self]


@dataclass(frozen=True)
class KindRule:
    """What one kind means: ``repeat_call`` (CloudCaller repeats the request), ``retry_attempt`` (a
    fresh create attempt may succeed), ``status`` (the lock API's answer), ``prefix`` (put before
    the cloud's words; ``{seconds}`` and ``{kind}`` are filled in by CloudCaller); ``max_tries`` bounds the
    requests of one call by count (0: only ``api_retry_time`` bounds them); ``health`` is the provider's
    health while failures of this kind last: quota, auth, outage or other; ``next_provider``: the provider
    cannot give this node now, so a machine type served by several providers tries the next one (lab.fallback)."""

    repeat_call: bool = False
    max_tries: int = 0
    retry_attempt: bool = False
    status: int = 502
    prefix: str = ""
    health: str = "other"
    next_provider: bool = False

    def describe(self, words: str, **fields: object) -> str:
        """``words`` (the cloud's, or the client's) after this kind's prefix, its ``{fields}`` filled in."""
        return f"{self.prefix.format(**fields)}: {words}" if self.prefix else words


# A dependency (the cloud) failed, not the request and not this server: the lock API answers 502.
RULES: dict[ErrorKind, KindRule] = {
    ErrorKind.TRANSIENT: KindRule(repeat_call=True, prefix="gave up after {seconds:.0f}s of retries ({kind})",
                                  health="outage"),
    ErrorKind.RATE_LIMIT: KindRule(repeat_call=True, prefix="gave up after {seconds:.0f}s of retries ({kind})",
                                   health="outage"),
    # An outage is not waited out for api_retry_time: 5 requests over about 10 s, then the lock fails
    # (503) and what it made is left to the reconciler, which retries once the cloud answers.
    ErrorKind.UNREACHABLE: KindRule(repeat_call=True, max_tries=5, status=503, prefix="cloud unreachable",
                                    health="outage"),
    ErrorKind.QUOTA: KindRule(prefix="quota exceeded", health="quota", next_provider=True),
    ErrorKind.AUTH: KindRule(prefix="the cloud refused the credentials in driver_args", health="auth"),
    ErrorKind.NOT_FOUND: KindRule(),
    ErrorKind.FATAL: KindRule(),
    ErrorKind.CONFIG: KindRule(),
    ErrorKind.NOT_REPEATED: KindRule(retry_attempt=True, health="outage"),
    ErrorKind.CLOUD_ERROR: KindRule(retry_attempt=True),
    ErrorKind.GONE: KindRule(retry_attempt=True),
    ErrorKind.TIMEOUT: KindRule(retry_attempt=True, health="outage"),
    ErrorKind.SSH_PORT: KindRule(),
    ErrorKind.DNS: KindRule(prefix="registering {name}"),
    ErrorKind.DNS_REFUSED: KindRule(prefix="the DNS service refused to register {name}, so nothing was "
                                                  "registered"),
    ErrorKind.LEFTOVER: KindRule(),
    ErrorKind.CANCELLED: KindRule(),
    ErrorKind.BUG: KindRule(),
}

# The lock API's answer to a ProvisionError: ``<ANSWER_PREFIX>: <the error>``.
ANSWER_PREFIX = "the cloud did not answer as expected"


def dns_kind(status: int | None) -> ErrorKind:
    """The kind of a failed DNS registration, from the DNS service's HTTP status (None: no answer)."""
    return ErrorKind.DNS_REFUSED if status is not None and 400 <= status < 500 else ErrorKind.DNS


def lock_api_answer(kind: ErrorKind, error: object) -> tuple[int, str]:
    """The lock API's status and message for a provisioning error of ``kind``."""
    return kind.rule.status, f"{ANSWER_PREFIX}: {error}"

