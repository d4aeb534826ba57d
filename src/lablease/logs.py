"""Logging set up once per process: one line per event, `key=value` fields, easy to grep."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str | int = "INFO", stream=None) -> None:
    """Configure the root logger once; later calls only change the level.

    Modules take their own logger with ``logging.getLogger(__name__)`` and log
    ``key=value`` pairs in the message, so a line can be found with grep.
    """
    root = logging.getLogger()
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    if not any(getattr(h, "_lablease", False) for h in root.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._lablease = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # libcloud and urllib3 log request bodies at DEBUG, which can carry passwords.
    for noisy in ("libcloud", "urllib3", "paramiko.transport", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
