"""Who is calling: an optional bearer token (hashed, compared in constant time) or the client address."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from lablease.dns.config import DnsConfig
from lablease.dns.validation import Rejection


@dataclass(frozen=True)
class Caller:
    """The audit identity of a request and the allow pattern that applies to it."""

    who: str
    allow: re.Pattern[str]


@dataclass(frozen=True)
class _Token:
    id: str
    digest: bytes
    allow: re.Pattern[str]

    def __repr__(self) -> str:  # the digest stays out of logs and tracebacks
        return f"_Token(id={self.id!r})"


class Authenticator:
    """Open (nsupdate-web's behaviour) when no token is configured, bearer tokens otherwise."""

    def __init__(self, config: DnsConfig):
        self._default = re.compile(config.allow_pattern)
        self._tokens = [
            _Token(t.id, t.digest(), re.compile(t.allow_pattern) if t.allow_pattern else self._default)
            for t in config.tokens
        ]

    @property
    def open(self) -> bool:
        return not self._tokens

    def identify(self, authorization: str | None, client: str) -> Caller:
        """Return the caller or raise Rejection(401); the token itself is never logged or echoed."""
        if self.open:
            return Caller(who=f"client={client}", allow=self._default)
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Rejection(401, "unauthorized", "missing token: send 'Authorization: Bearer <token>'")
        digest = hashlib.sha256(presented.strip().encode()).digest()
        match = None
        for token in self._tokens:  # look at every token so timing does not tell which one is close
            if hmac.compare_digest(digest, token.digest):
                match = token
        if match is None:
            raise Rejection(401, "unauthorized", "wrong token")
        return Caller(who=f"token={match.id}", allow=match.allow)
