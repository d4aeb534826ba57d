"""Redaction of secrets in configuration data and text before it is shown or logged."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"

# Keys whose values are secrets wherever they appear (driver_args, tokens, keys).
_SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api_?key|access_?key|private_?key|credential|tsig_?key|key_?data)",
    re.IGNORECASE,
)
# ...except a key that names where a secret is kept (admin_token_file, token_file): a path is no secret.
_NAMES_A_PLACE = re.compile(r"_(file|path|dir)$", re.IGNORECASE)
# The password of a URL: scheme://user:PASSWORD@host (a database_url, an nsupdate_url with basic auth).
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<password>[^\s@/]+)(?=@)")


def is_secret_key(key: str) -> bool:
    """True when a mapping key names a secret (password, token, secret, api key, ...)."""
    key = str(key)
    return bool(_SECRET_KEY.search(key)) and not _NAMES_A_PLACE.search(key)


def redact_text(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``postgresql://u:***@host/db``)."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)


# A secret-named setting written out as text: ``password: hunter2``, ``API_KEY=abc``, ``"token": "abc"``.
_ASSIGNED_SECRET = re.compile(r"(?P<head>\b[\w.-]*" + _SECRET_KEY.pattern + r"[\w.-]*[\"']?\s*[:=]\s*[\"']?)"
                              r"(?P<value>[^\s\"',;]+)", re.IGNORECASE)


_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL)


def redact_log(text: str) -> str:
    """Free text from elsewhere (a console log): URL passwords, private keys and every ``secret-name: value``
    hidden."""
    text = _PRIVATE_KEY.sub(REDACTED, text)
    return _ASSIGNED_SECRET.sub(lambda m: m.group("head") + REDACTED, redact_text(text))


def redact(value: Any, *, secret: bool = False) -> Any:
    """Return a deep copy of ``value`` with every secret-named key's value replaced by ``***``,
    and the password of every URL hidden.

    Containers under a secret-looking key are walked, not hidden whole, so that
    ``tokens: [{id: ci, token: ...}]`` still shows the ids; but a plain value in a list under such
    a key (``tokens: [abc, def]``) is itself a secret (``secret`` carries that down the lists).
    """
    if isinstance(value, dict):
        return {k: redact(v, secret=is_secret_key(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secret=secret) for v in value]
    if secret and value not in (None, ""):
        return REDACTED
    return redact_text(value) if isinstance(value, str) else value
