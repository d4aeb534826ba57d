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


def redact(value: Any) -> Any:
    """Return a deep copy of ``value`` with every secret-named key's value replaced by ``***``."""
    if isinstance(value, dict):
        # Containers under a secret-looking key (a list of tokens) are walked, not hidden whole.
        return {
            k: REDACTED if is_secret_key(k) and v not in (None, "") and not isinstance(v, (dict, list, tuple)) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
