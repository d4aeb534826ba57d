"""The lock API's edge: every request is checked here once, before anything parses or routes it.

- The body is at most ``max_body_bytes``: a declared Content-Length over it is refused with 413 at
  once, a streamed body as soon as it grows over it.
- A JSON body is nested at most ``MAX_DEPTH`` levels, measured on the raw bytes before parsing
  (Python's parser recurses, and a deep body would end in ``RecursionError``).
- Text is valid Unicode the database can store: no NUL, no unpaired surrogate (``"\\ud800"``), in
  every string of a JSON body (keys too), in the path and in the query. A body is UTF-8 JSON (no
  NaN or Infinity); a path and a query are UTF-8 once percent-decoded; a path holds no encoded
  slash (``%2F`` would turn ``/nodes/a%2Flock/`` into ``/nodes/a/lock/``, another endpoint).

Refusals are paddles' ``{"message": ...}``: 413 for size, 400 otherwise. The fast lane
(``fastlane.HotPaths``) serves lock_many/unlock_many in front of this layer and calls the same
functions, so every path is held to the same rules.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_DEPTH = 32
TEXT_RULE = "must be valid Unicode text: no NUL character and no unpaired surrogate (\\ud800-\\udfff)"

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_DELTA = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKET = bytes(b for b in range(256) if b not in _DELTA)
_HEADERS = [(b"content-type", b"application/json")]


class Refused(Exception):
    """A request the edge refuses: ``status`` and paddles' one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def too_large_message(limit: int) -> str:
    return f"request body too large: the limit is {limit} bytes"


def declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length" and value.isdigit():
            return int(value)
    return None


def check_target(scope: Scope) -> None:
    """Refuse a path or query that is not UTF-8 text without NUL, or a path with an encoded slash."""
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogatepass")
    if b"%" in raw or not raw.isascii():
        if b"%2f" in raw.lower():
            raise Refused(400, "the path must not contain an encoded slash (%2F): node names never hold '/'")
        _check_text(_decoded(unquote_to_bytes(raw), "the path"), "the path")
    query = scope.get("query_string", b"")
    if query:
        for pair in query.split(b"&"):
            key, _, value = pair.partition(b"=")
            name = _decoded(unquote_to_bytes(key.replace(b"+", b" ")), "a query parameter name")
            _check_text(name, "a query parameter name")
            where = f"query parameter {_shown(name)!r}"
            _check_text(_decoded(unquote_to_bytes(value.replace(b"+", b" ")), where), where)


def _decoded(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, f"{where} must be UTF-8 once percent-decoded") from None


def _check_text(text: str, where: str) -> None:
    if "\x00" in text or (not text.isascii() and not _encodable(text)):
        raise Refused(400, f"{where} {TEXT_RULE}")


def _shown(name: str) -> str:
    """A client's key or parameter name as a message may repeat it: short, printable text, else ``?``."""
    return name if len(name) <= 40 and name.isprintable() and _encodable(name) else "?"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_depth(raw: bytes) -> None:
    """Refuse a body whose brackets nest deeper than MAX_DEPTH (strings are skipped), before parsing."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    if brackets.count(b"[") + brackets.count(b"{") > MAX_DEPTH and \
            max(accumulate(map(_DELTA.__getitem__, brackets))) > MAX_DEPTH:
        raise Refused(400, f"the JSON body is nested deeper than {MAX_DEPTH} levels")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw``, checked (depth, text); Refused(400) when it is not JSON or breaks a rule."""
    check_depth(raw)
    try:
        text = raw.decode("utf-8")  # JSON is UTF-8 (RFC 8259); Python's json would also guess UTF-16 and UTF-32
    except UnicodeDecodeError:
        raise Refused(400, "the JSON body must be UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise Refused(400, "could not decode JSON body") from None
    check_strings(data)
    return data


def check_strings(data: Any) -> None:
    """Refuse NUL and unpaired surrogates in any string of a parsed JSON value, naming where it is."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            _check_text(value, where or "the body")
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, f"a key in {where}" if where else "a key of the body")
                stack.append((item, f"{where}.{_shown(key)}" if where else _shown(key)))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(value))


async def answer(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [*_HEADERS, *(headers or []), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


async def checked_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request's whole body once its path, query and size pass (None: the client went away); else Refused."""
    check_target(scope)
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise Refused(413, too_large_message(limit))
    return await read_body(receive, limit)


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None when the client went away; Refused(413) once it grows over ``limit``."""
    chunks, size, more = [], 0, True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, too_large_message(limit))
        chunks.append(chunk)
        more = msg.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class RequestGuard:
    """Apply the edge rules above to every HTTP request, then hand it on with its body replayed.

    ``refuse`` and ``check_body`` are what another server (devcloud) words or checks its own way.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            raw = await checked_body(scope, receive, self.limit)
            if raw is None:
                return
            if raw:
                self.check_body(raw)
        except Refused as exc:
            await self.refuse(exc, scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()  # after the body: the disconnect, for streaming endpoints

        await self.app(scope, replay, send)

    def check_body(self, raw: bytes) -> None:
        parse_json(raw)  # the endpoint parses it again: only bodies that pass get there

    async def refuse(self, exc: Refused, scope: Scope, receive: Receive, send: Send) -> None:
        await answer(send, exc.status, {"message": exc.message})
