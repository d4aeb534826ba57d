"""Validation of regular expressions given in config files, for pydantic validators."""

from __future__ import annotations

import re


def check_regex(pattern: str, *, hint: str = "") -> str:
    """Return ``pattern`` if it compiles; else raise ValueError naming the position, not the text.

    The pattern is not echoed: the message goes through ConfigError, which never shows values.
    """
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc.msg} at position {exc.pos}){hint}") from None
    return pattern
