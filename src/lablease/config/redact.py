"""Redaction of secrets in configuration data before it is shown or logged."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"

# Keys whose values are secrets wherever they appear (driver_args, tokens, keys).
_SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api_?key|access_?key|private_?key|credential|tsig_?key|key_?data)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """True when a mapping key names a secret (password, token, secret, api key, ...)."""
    return bool(_SECRET_KEY.search(str(key)))


def redact(value: Any, *, secret: bool = False) -> Any:
    """Return a deep copy of ``value`` with every secret-named key's value replaced by ``***``.

    Containers under a secret-looking key are walked, not hidden whole, so that
    ``tokens: [{id: ci, token: ...}]`` still shows the ids; but a plain value in a list under such
    a key (``tokens: [abc, def]``) is itself a secret (``secret`` carries that down the lists).
    """
    if isinstance(value, dict):
        return {k: redact(v, secret=is_secret_key(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secret=secret) for v in value]
    return REDACTED if secret and value not in (None, "") else value
