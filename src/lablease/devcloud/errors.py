"""OpenStack-shaped error answers: each service family words its errors its own way."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response

Style = Literal["nova", "cinder", "neutron", "glance", "keystone"]

# Nova and Cinder wrap the fault in a key named after its kind.
_NOVA_KINDS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit", 429: "overLimit",
               500: "computeFault", 503: "serviceUnavailable"}
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 409: "Conflict", 413: "Request Entity Too Large",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
_NEUTRON_TYPES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                  409: "Conflict", 413: "OverQuota", 429: "OverLimit", 500: "InternalServerError"}


class CloudError(Exception):
    """Raised by handlers; rendered in the style of the service that raised it."""

    def __init__(self, status: int, message: str, style: Style = "nova", *,
                 kind: str | None = None, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.style = style
        self.kind = kind
        self.headers = headers or {}
        self.extra = extra or {}


def error_body(err: CloudError) -> dict[str, Any]:
    """The JSON body the real service sends for this error."""
    if err.style in ("nova", "cinder"):
        kind = err.kind or _NOVA_KINDS.get(err.status, "computeFault" if err.style == "nova" else "badRequest")
        return {kind: {"code": err.status, "message": err.message, **err.extra}}
    if err.style == "neutron":
        kind = err.kind or _NEUTRON_TYPES.get(err.status, "NeutronError")
        return {"NeutronError": {"type": kind, "message": err.message, "detail": ""}}
    if err.style == "keystone":
        return {"error": {"code": err.status, "title": _TITLES.get(err.status, "Error"), "message": err.message}}
    # Glance answers with a title and an explanation.
    return {"code": err.status, "title": _TITLES.get(err.status, "Error"), "message": err.message}


def render(err: CloudError) -> Response:
    return JSONResponse(error_body(err), status_code=err.status, headers=err.headers)


def style_for_path(path: str) -> Style:
    """Which service answers this path (used for errors raised before routing picks a handler)."""
    if path.startswith("/volume"):
        return "cinder"
    if path.startswith("/network"):
        return "neutron"
    if path.startswith("/image"):
        return "glance"
    if path.startswith(("/v2.0", "/v3", "/identity")) or path == "/":
        return "keystone"
    return "nova"


async def json_body(request: Request, style: Style, root: str | None = None) -> dict[str, Any]:
    """Parse the request body as a JSON object (with ``root`` key when given), or raise 400 as the service does."""
    raw = await request.body()
    try:  # the edge (devcloud.edge) has bounded its size and depth and checked its text
        data = json.loads((raw or b"").decode("utf-8"))
    except (ValueError, RecursionError):
        raise CloudError(400, "Malformed request body" if style in ("nova", "cinder")
                         else "Failed to parse request. Required attribute missing or body is not valid JSON.",
                         style) from None
    if not isinstance(data, dict):
        raise CloudError(400, "Malformed request body: the body must be a JSON object", style)
    if root is not None:
        inner = data.get(root)
        if not isinstance(inner, dict):
            raise CloudError(400, f"Invalid input for field/attribute {root}. "
                                  f"Value: {_short(inner)}. '{root}' is a required property", style)
        return inner
    return data


def _short(value: Any) -> str:
    text = json.dumps(value) if value is not None else "None"
    return text if len(text) < 80 else text[:77] + "..."
