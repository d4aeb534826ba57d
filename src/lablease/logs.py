"""Logging set up once per process: one line per event, `key=value` fields, easy to grep.

Also what every command and service shares about output: the ``-q/--quiet`` and ``--log-level``
options, the access log of the HTTP services and the line a service prints once it listens.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any, Callable, Iterator, Optional
from urllib.parse import quote

import typer

from lablease.config.redact import redact_text

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Libraries whose INFO lines are chatter to an operator (paramiko's "Connected (version 2.0 …)",
# httpx's one line per request) and whose DEBUG lines can carry request bodies, i.e. passwords.
LIBRARIES = ("libcloud", "urllib3", "paramiko", "httpx", "httpcore", "alembic", "filelock", "uvicorn.error")


MAX_ERROR_LINE = 400  # characters of an error line: the whole text is in the node's last_error and events


def cut(line: str, limit: int = MAX_ERROR_LINE) -> str:
    """``line`` at most ``limit`` characters, saying how many were left out."""
    if len(line) <= limit:
        return line
    more = f"… ({len(line) - limit} more characters)"
    return line[: limit - len(more)] + more


class RedactingFormatter(logging.Formatter):
    """The standard format, with any password inside a URL (``user:***@host``) hidden, and an error's lines
    at most MAX_ERROR_LINE characters (a cloud's answer can be kilobytes; a traceback is kept whole)."""

    def format(self, record: logging.LogRecord) -> str:
        text = redact_text(super().format(record))
        if record.levelno < logging.ERROR:
            return text
        lines = text.split("\n")
        own = 1 if (record.exc_info or record.exc_text or record.stack_info) else len(lines)
        return "\n".join([cut(line) for line in lines[:own]] + lines[own:])


def _handler() -> logging.Handler | None:
    return next((h for h in logging.getLogger().handlers if getattr(h, "_lablease", False)), None)


def setup_logging(level: str | int = "INFO", stream=None) -> None:
    """Configure the root logger once; later calls only change the level.

    Modules take their own logger with ``logging.getLogger(__name__)`` and log
    ``key=value`` pairs in the message, so a line can be found with grep. Libraries log only
    warnings unless the level is DEBUG (then their INFO lines too, never their DEBUG lines).
    """
    root = logging.getLogger()
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    if _handler() is None:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(RedactingFormatter(FORMAT))
        handler._lablease = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    library_level = logging.INFO if level <= logging.DEBUG else max(logging.WARNING, level)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(library_level)


class _ConsoleHandler(logging.Handler):
    def __init__(self, write: Callable[[str], None], formatter: logging.Formatter | None):
        super().__init__()
        self._write = write
        self.setFormatter(formatter or RedactingFormatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except Exception:  # noqa: BLE001 - a log line must never break the command
            self.handleError(record)


@contextlib.contextmanager
def logs_through(write: Callable[[str], None]) -> Iterator[None]:
    """Send log lines to ``write`` (a live display's ``console.print``) for the block, so that they
    appear above the display instead of breaking it; the usual handler comes back afterwards."""
    root = logging.getLogger()
    usual = _handler()
    if usual is None:
        yield
        return
    through = _ConsoleHandler(write, usual.formatter)
    through.setLevel(usual.level)
    through._lablease = True  # type: ignore[attr-defined]
    root.removeHandler(usual)
    root.addHandler(through)
    try:
        yield
    finally:
        root.removeHandler(through)
        root.addHandler(usual)


def logs_above(console: Any) -> contextlib.AbstractContextManager[None]:
    """``logs_through`` a rich console that shows a live display: each log line is printed above it, whole."""
    return logs_through(lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True))


# -- options every command takes ---------------------------------------------------------------

def _check_level(value: Optional[str]) -> Optional[str]:
    if value is not None and value.upper() not in LEVELS:
        raise typer.BadParameter(f"must be one of {', '.join(LEVELS)}")
    return value.upper() if value else value


QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only results and errors: no progress, no chatter.")
ServiceQuietOpt = typer.Option(False, "--quiet", "-q", help="Log only warnings and errors (no access lines).")
LogLevelOpt = typer.Option(None, "--log-level", callback=_check_level, metavar="LEVEL",
                           help=f"Log lines from this level on: {', '.join(LEVELS)}.")


def command_level(quiet: bool, log_level: Optional[str], default: str = "WARNING") -> str:
    """The log level a command runs at: ``--log-level``, else ERROR with ``-q``, else ``default``."""
    if log_level:
        return log_level
    return "ERROR" if quiet else default


def service_level(quiet: bool, log_level: Optional[str], configured: str) -> str:
    """A service's log level: ``--log-level``, else WARNING with ``-q``, else its config's ``log_level``."""
    return log_level or ("WARNING" if quiet else configured)


def setup_command_logging(quiet: bool, log_level: Optional[str], default: str = "WARNING") -> str:
    """``setup_logging`` at the command's level (see ``command_level``); returns that level."""
    level = command_level(quiet, log_level, default)
    setup_logging(level)
    return level


# -- services ------------------------------------------------------------------------------------

def announce(service: str, url: str) -> None:
    """The one line every service prints once it listens, whatever the log level."""
    sys.stderr.write(f"{service} listening on {url}\n")
    sys.stderr.flush()


def announcing(server_cls: type, service: str, url: str) -> type:
    """``server_cls`` (a ``uvicorn.Server``) that announces ``url`` once its socket is bound."""

    class Announcing(server_cls):  # type: ignore[misc, valid-type]
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                announce(service, url)

    return Announcing


access_log = logging.getLogger("lablease.access")
CLIENT_GONE = 499  # nginx's status for a request whose client closed the connection before the answer
_SAFE_PATH = "/:@-._~!$&'()*+,;="


def successful_read(method: str, path: str, status: int) -> bool:
    """A GET or HEAD that was answered below 400: a dashboard refresh, a list, a scrape."""
    return method in ("GET", "HEAD") and status < 400


class AccessLog:
    """ASGI middleware: one line per request, ``access method=… path=… status=… duration_ms=… client=…``.

    The path is re-quoted (a hostile name cannot forge a second log line) and the query string and
    headers are left out (they may carry names of other systems or a bearer token). Requests ``quiet``
    picks (default: successful reads, which a dashboard repeats every few seconds) are logged at DEBUG;
    changes and refusals at INFO.
    """

    def __init__(self, app: Any, logger: logging.Logger = access_log,
                 quiet: Callable[[str, str, int], bool] = successful_read):
        self.app = app
        self.log = logger
        self.quiet = quiet

    def __getattr__(self, name: str) -> Any:  # app.state and friends of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 0, "gone": False}

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        async def receiving() -> dict:
            message = await receive()
            if message["type"] == "http.disconnect":
                status["gone"] = True
            return message

        try:
            await self.app(scope, receiving, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            # No answer sent: 499 (nginx's "client closed request") when the client went away first, else 500.
            code = status["code"] or (CLIENT_GONE if status["gone"] else 500)
            method, path = scope.get("method", "-"), scope.get("path", "")
            level = logging.DEBUG if self.quiet(method, path, code) else logging.INFO
            self.log.log(level, "access method=%s path=%s status=%d duration_ms=%.1f client=%s%s",
                         method, quote(path, safe=_SAFE_PATH), code, (time.perf_counter() - start) * 1000,
                         client[0], " (the client went away before the answer)" if code == CLIENT_GONE else "")
