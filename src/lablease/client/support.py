"""What the lab's user commands share: where the server is, who the user is, exit codes, progress.

The server and the lab domain come from teuthology's own config files, so a lab user's
existing ``~/.teuthology.yaml`` points ``lablease`` where it points ``teuthology-lock``.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from lablease.config import ConfigError, load_yaml_file
from lablease.hostnames import canonicalize_hostname
from lablease.client.lockclient import EventStream, LockClient, LockClientError
from lablease.logs import setup_command_logging

log = logging.getLogger(__name__)

SERVER_ENV = "LABLEASE_SERVER"
CONFIG_FILES = ("~/.teuthology.yaml", "/etc/teuthology.yaml")  # teuthology's order
WAIT_SECONDS = 3600.0  # a cloud lock answers once every node is SSH-ready: minutes, not seconds

OK, REFUSED, USAGE, UNAVAILABLE, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES = (
    "Exit codes: 0 ok; 1 refused by the server (400/403/404, its message is shown); 2 usage error; "
    "3 unavailable (503: not enough nodes, provisioning failed and was rolled back, server shutting "
    "down); 4 cannot reach the server; 130 interrupted."
)


@dataclass
class Session:
    """One command's settings: the server, the lab domain, the output mode and the two consoles."""

    url: str
    lab_domain: str | None
    as_json: bool
    quiet: bool
    out: Console
    err: Console

    @property
    def live(self) -> bool:
        """Spinners and live views only for a person at a terminal; logs and scripts get plain lines."""
        return self.err.is_terminal and not (self.as_json or self.quiet)

    def client(self) -> LockClient:
        return new_client(self.url)

    def node_name(self, name: str) -> str:
        """The lock server's name of ``name``: a short name gets the lab domain, ``user@`` is dropped."""
        host = name.rpartition("@")[2]
        try:
            return canonicalize_hostname(host, self.lab_domain)
        except ValueError as exc:
            self.fail(USAGE, str(exc))

    def emit_json(self, value: Any) -> None:
        """The only thing ``--json`` writes to stdout."""
        self.out.file.write(json.dumps(value, indent=2) + "\n")

    def fail(self, code: int, text: str, status: int | None = None) -> NoReturn:
        """Say why on stderr (and as JSON on stdout with --json), then exit with ``code``."""
        self.err.print(f"error: {text}", markup=False, highlight=False)
        if self.as_json:
            self.emit_json({"error": text, "exit_code": code, "status": status})
        raise typer.Exit(code)


def new_client(url: str) -> LockClient:
    """A client of ``url``; the one seam tests replace to put a fake HTTP server behind the CLI."""
    return LockClient(url)


def _config_files() -> list[dict[str, Any]]:
    """The teuthology config files that exist, first one first; a broken one is a usage error."""
    found = []
    for name in CONFIG_FILES:
        path = Path(name).expanduser()
        if path.is_file():
            try:
                found.append(load_yaml_file(path))
            except ConfigError as exc:
                _usage_error(str(exc))
    return found


def _first(configs: list[dict[str, Any]], key: str) -> str | None:
    return next((str(c[key]) for c in configs if c.get(key)), None)


def _usage_error(text: str) -> NoReturn:
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(USAGE)


def server_and_domain(server: str | None) -> tuple[str, str | None]:
    """``--server``, else $LABLEASE_SERVER, else ``lock_server:`` of teuthology.yaml; and its ``lab_domain``."""
    configs = _config_files()
    url = server or os.environ.get(SERVER_ENV) or _first(configs, "lock_server")
    if not url:
        _usage_error(f"no lock server: pass --server URL, set {SERVER_ENV}, or put "
                     f"'lock_server: http://HOST:PORT' in ~/.teuthology.yaml")
    return url.rstrip("/"), _first(configs, "lab_domain")


def open_session(server: str | None, as_json: bool, quiet: bool, log_level: str | None = None) -> Session:
    """Resolve the settings every command needs; logs at ``--log-level`` (default: warnings only, and
    libraries such as httpx only from WARNING, so their INFO lines never break a live view)."""
    setup_command_logging(quiet, log_level)
    url, lab_domain = server_and_domain(server)
    if lab_domain is None:
        with LockClient(url, timeout=10) as client:
            lab_domain = client.server_lab_domain()
    width = None if sys.stdout.isatty() else 200  # logs and pipes: do not wrap table cells at 80 columns
    return Session(url=url, lab_domain=lab_domain, as_json=as_json, quiet=quiet,
                   out=Console(width=width, soft_wrap=width is not None), err=Console(stderr=True, soft_wrap=True))


def default_owner() -> str:
    """``user@host``, as teuthology names the owner of a lock."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def new_request_id() -> str:
    """The id under which the server publishes this request's progress (chosen by the client)."""
    return f"cli-{uuid.uuid4().hex[:16]}"


def exit_code(exc: LockClientError) -> int:
    """The documented exit code of a failed request."""
    if exc.unreachable:
        return UNREACHABLE
    return UNAVAILABLE if exc.status == 503 else REFUSED


def census(nodes: list[dict[str, Any]]) -> str:
    """What the nodes of a type are doing, counted: "6 in all: 2 free, 3 locked (1 being destroyed), 1 down"."""
    locked = [n for n in nodes if n.get("locked")]
    down = sum(1 for n in nodes if not n.get("locked") and not n.get("up"))
    destroying = sum(1 for n in locked if n.get("state") in ("destroying", "destroy-failed"))
    parts = [f"{len(nodes) - len(locked) - down} free", f"{len(locked)} locked"
             + (f" ({destroying} being destroyed or failed to be)" if destroying else ""), f"{down} down"]
    return f"{len(nodes)} in all: {', '.join(parts)}"


def explain_shortage(client: LockClient, exc: LockClientError, machine_type: str, wanted: int) -> LockClientError:
    """paddles' bare 503 ("only N nodes available") with what a user can do next.

    Machine types match exactly (as in paddles), so `-m Smithi` finds none of `smithi`'s nodes: say so,
    with the types there are. Otherwise count what the type's nodes are doing (free, locked, down), and say
    when ``wanted`` is more than the type has at all. The server's words come first; any other failure
    (a provisioning error is a 503 too) is returned as it was.
    """
    if exc.status != 503 or not re.fullmatch(r"only \d+ nodes available", exc.reason):
        return exc
    try:
        known = [t for t in client.machine_types() if isinstance(t, str)]
        unknown = [t for t in machine_type.split("|") if t not in known]
        nodes = [] if unknown else client.list(machine_type=machine_type)
    except LockClientError:
        return exc  # the explanation is a courtesy; the refusal stands as it was
    if unknown:
        listed = ", ".join(known) or "none"
        hint = (f"no node has machine type {', '.join(repr(t) for t in unknown)} (types are case-sensitive; "
                f"this server has: {listed})")
    elif wanted > len(nodes):
        hint = (f"{machine_type} has {census(nodes)}; asking for {wanted} can never succeed: ask for fewer, "
                f"or an admin adds nodes (lablease nodes add)")
    else:
        hint = f"{machine_type} has {census(nodes)}"
    hint += f"; see: lablease list -m '{machine_type}'"
    return LockClientError(f"{exc.reason}: {hint}", status=exc.status, reason=f"{exc.reason}: {hint}")


@contextlib.contextmanager
def answered(session: Session, interrupted: str = "interrupted") -> Iterator[None]:
    """Turn a refused or failed request into its message and exit code; Ctrl-C into 130."""
    try:
        yield
    except LockClientError as exc:
        session.fail(exit_code(exc), exc.reason, exc.status)
    except KeyboardInterrupt:
        session.fail(INTERRUPTED, interrupted)


class ProgressWatcher:
    """Reads a request's progress stream in a background thread and hands each event to ``show``.

    The stream is opened before the request is sent (no early event is lost) and closed when the
    request returns. A lost or missing stream only costs the view, never the request.
    """

    OPEN_WAIT = 5.0  # seconds to wait for the stream before sending the request anyway
    DRAIN_WAIT = 0.2  # seconds for events already on their way when the answer came

    def __init__(self, url: str, request_id: str, show: Callable[[dict[str, Any]], None]) -> None:
        self._client = new_client(url)
        self._request_id, self._show = request_id, show
        self._opened, self._stopped, self._muted = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="lablease-progress", daemon=True)
        self._stream: EventStream | None = None

    def __enter__(self) -> "ProgressWatcher":
        self._thread.start()
        self._opened.wait(self.OPEN_WAIT)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(self.DRAIN_WAIT)
        self._muted.set()  # the caller's view is closing: nothing more reaches it
        if self._stream is not None:
            self._stream.abort()  # the server keeps the stream open: end it here
        self._thread.join(1.0)
        self._client.close()

    def _run(self) -> None:
        try:
            with self._client.progress(self._request_id) as events:
                self._stream = events
                self._opened.set()
                for event in events:
                    if self._muted.is_set():
                        return
                    if event.get("status") != "made":  # a resource note, not a stage change
                        self._show(event)
        except Exception as exc:  # noqa: BLE001 - the view is a nicety; the request decides the outcome
            if not self._stopped.is_set():
                log.debug("progress stream ended request=%s error=%s", self._request_id, exc)
        finally:
            self._opened.set()
