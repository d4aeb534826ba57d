"""A small HTTP client of the /nodes API, used by ``lablease nodes`` (and usable by other tools)."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


class LockClientError(RuntimeError):
    """The server refused a request or could not be reached; the message says which and why.

    ``status`` is the HTTP status of a refusal (None otherwise), ``reason`` the server's own
    message, and ``unreachable`` tells a request that never got an answer (so callers can pick
    an exit code without parsing the text).
    """

    def __init__(self, text: str, *, status: int | None = None, reason: str | None = None,
                 unreachable: bool = False) -> None:
        super().__init__(text)
        self.status = status
        self.reason = reason or text
        self.unreachable = unreachable


@dataclass
class LockClient:
    """``base_url`` is the lock server (``lock_server`` of teuthology.yaml)."""

    base_url: str
    admin_token: str | None = field(default=None, repr=False)  # repr ends up in logs and tracebacks
    timeout: float = 30.0
    transport: httpx.BaseTransport | None = field(default=None, repr=False)  # tests put a fake HTTP here

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
        self._http = httpx.Client(base_url=self.base_url.rstrip("/"), headers=headers, timeout=self.timeout,
                                  transport=self.transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "LockClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code >= 400:
            text = body.get("message") if isinstance(body, dict) else None
            text = text or resp.text[:200]
            raise LockClientError(f"{method} {path}: {resp.status_code} {text}", status=resp.status_code,
                                  reason=text)
        if body is None and resp.content.strip() != b"null":
            raise LockClientError(f"{method} {path}: the answer is not JSON; is {self.base_url} a lablease lock server?")
        return body

    def _unreachable(self, exc: Exception) -> LockClientError:
        return LockClientError(f"cannot reach the lock server at {self.base_url}: {exc}", unreachable=True)

    def _waiting(self, wait: float | None) -> dict[str, Any]:
        """Request options for an answer that may take ``wait`` seconds (a cloud node is provisioned first)."""
        return {} if wait is None else {"timeout": httpx.Timeout(self.timeout, read=wait)}

    def server_lab_domain(self) -> str | None:
        """The lab domain a lablease server was configured with (None: not set, or not a lablease server)."""
        try:
            about = self._call("GET", "/lablease/")
        except LockClientError:
            return None
        return about.get("lab_domain") if isinstance(about, dict) else None

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: (int(v) if isinstance(v, bool) else v) for k, v in filters.items() if v is not None}
        return self._call("GET", "/nodes/", params=params)

    def machine_types(self) -> list[str]:
        """The machine types the server's nodes have (paddles' sorted list)."""
        return self._call("GET", "/nodes/machine_types/")

    def get(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/nodes/{name}/")

    def create(self, name: str, **fields: Any) -> None:
        self._call("POST", "/nodes/", json={"name": name, **fields})

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/nodes/{name}/")

    def lock_many(self, count: int, machine_type: str, locked_by: str, description: str | None, *,
                  wait: float | None = None, **extra: Any) -> list[dict]:
        """Lock ``count`` nodes; ``extra`` are the optional keys (os_type, os_version, arch, request_id).

        ``wait`` is how long to wait for the answer (the lab service provisions cloud nodes first).
        """
        body = {"count": count, "machine_type": machine_type, "locked_by": locked_by, "description": description}
        body.update({k: v for k, v in extra.items() if v is not None})
        return self._call("POST", "/nodes/lock_many/", json=body, **self._waiting(wait))

    def unlock_many(self, names: list[str], locked_by: str, description: str | None = None, *,
                    wait: float | None = None) -> list[dict]:
        """Unlock all of ``names`` or none; a cloud node's unlock waits for its destroy (``wait``)."""
        body: dict[str, Any] = {"names": names, "locked_by": locked_by}
        if description is not None:
            body["description"] = description
        return self._call("POST", "/nodes/unlock_many/", json=body, **self._waiting(wait))

    def lock_one(self, name: str, locked_by: str, description: str | None = None, *,
                 wait: float | None = None, **extra: Any) -> dict[str, Any]:
        """Lock one node (``PUT /nodes/<name>/lock/``); ``extra``: os_type, os_version, request_id."""
        body = {"locked": True, "locked_by": locked_by, "description": description}
        body.update({k: v for k, v in extra.items() if v is not None})
        return self._call("PUT", f"/nodes/{name}/lock/", json=body, **self._waiting(wait))

    def reconcile(self, machine_type: str | None = None, *, dry_run: bool = False,
                  settle: float | None = None) -> list[dict[str, Any]]:
        """One reconciler pass of the lab service now (admin): one report per provider."""
        params: dict[str, Any] = {"dry_run": "true" if dry_run else "false"}
        if machine_type is not None:
            params["machine_type"] = machine_type
        if settle is not None:
            params["settle"] = settle
        return self._call("POST", "/lab/reconcile/", params=params, **self._waiting(120.0 + (settle or 0)))

    def force_unlock(self, name: str, by: str, *, wait: float = 300.0) -> dict[str, Any]:
        """Destroy and free a cloud node in any state, whoever holds it (admin); ``by`` is named in its events."""
        return self._call("POST", f"/lab/nodes/{name}/force-unlock/", params={"by": by}, **self._waiting(wait))

    def lock_terms(self, name: str, change: str, locked_by: str, **fields: Any) -> dict[str, Any]:
        """An owner's ``change`` (extend, hold, release) of a cloud lock's terms; the node with its new terms."""
        return self._call("POST", f"/lab/nodes/{name}/{change}/", json={"locked_by": locked_by, **fields})

    def usage(self, since: str | None = None, by: str = "owner") -> dict[str, Any]:
        """Node-seconds per owner or machine type since ``since`` (GET /lab/usage/)."""
        return self._call("GET", "/lab/usage/", params={"by": by, **({"since": since} if since else {})})

    def events(self, name: str, count: int | None = None) -> list[dict[str, Any]]:
        """The node's event trail, oldest first (a lablease extension: 404 on paddles)."""
        params = {"count": count} if count is not None else {}
        return self._call("GET", f"/nodes/{name}/events/", params=params)

    @contextlib.contextmanager
    def progress(self, request_id: str) -> Iterator[EventStream]:
        """Open the progress stream of lock request ``request_id``; yields its events as an EventStream.

        Open it before sending the lock so no event is missed. The events end when the server
        closes the stream or on ``abort()``; a server without the endpoint (paddles, 404) gives none.
        """
        options = {"params": {"request": request_id}, "timeout": httpx.Timeout(self.timeout, read=None)}
        with contextlib.ExitStack() as stack:
            try:
                resp = stack.enter_context(self._http.stream("GET", "/lab/progress/", **options))
                refused = resp.status_code >= 400 and resp.status_code != 404
                if refused:
                    resp.read()
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
            if refused:
                raise LockClientError(f"GET /lab/progress/: {resp.status_code} {resp.text[:200]}",
                                      status=resp.status_code, reason=resp.text[:200])
            yield EventStream(self, None if resp.status_code == 404 else resp)

    def _events_of(self, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
        try:
            yield from server_sent_events(lines)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None


@dataclass
class EventStream:
    """The events of an open progress stream (none when ``response`` is None: no such endpoint)."""

    client: LockClient
    response: httpx.Response | None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.client._events_of(self.response.iter_lines()) if self.response else iter(())

    def abort(self) -> None:
        """End the stream now, from any thread: a reader blocked on a quiet stream returns at once."""
        stream = self.response.extensions.get("network_stream") if self.response else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def server_sent_events(lines: Iterable[str], kind: str = "progress") -> Iterator[dict[str, Any]]:
    """The JSON ``data`` of each ``kind`` event in a text/event-stream; comments and bad JSON are skipped."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data and event == kind:
                with contextlib.suppress(ValueError):
                    yield json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field_name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field_name == "event":
                event = value
            elif field_name == "data":
                data.append(value)
