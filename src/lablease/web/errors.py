"""Error answers every lablease HTTP server shares: ``{"message": ...}`` bodies, 405 with a full ``Allow``,
and one readable line for a request that failed validation."""

from __future__ import annotations

import logging

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class Message(BaseModel):
    """Every error answer: paddles' one-line message."""

    model_config = ConfigDict(extra="forbid")

    message: str


def allowed_methods(request: Request) -> str:
    """Every method served at this path (Starlette's own 405 names only the first route's). The routes
    naming the path most literally own it: ``/nodes/machine_types/`` is not a ``/nodes/{name}/``."""
    path = request.scope["path"]
    by_params: dict[int, set[str]] = {}
    for route in flat_routes(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if getattr(getattr(route, "endpoint", None), "refuses_methods", False):
            continue  # a refusal (see refuse_methods) serves nothing
        if regex is not None and regex.match(path):
            params = len(getattr(route, "param_convertors", None) or ())
            by_params.setdefault(params, set()).update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(by_params[min(by_params)])) if by_params else ""


# Methods a refusal route takes: every one a client may send but the path's own routes.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def refuse_methods(allow: tuple[str, ...], text: str) -> Callable[[], JSONResponse]:
    """The endpoint of a route that takes the methods a path does not serve (``METHODS`` but ``allow``): 405
    with ``Allow`` and ``text`` (paddles' own message, say), where a wider route (``/nodes/{name}/``) would
    otherwise take the request. ``allowed_methods`` skips such routes."""
    def refuse() -> JSONResponse:
        return message(405, text, {"Allow": ", ".join(sorted(allow))})
    refuse.refuses_methods = True  # type: ignore[attr-defined]
    return refuse


def flat_routes(routes: list) -> list:
    """The app's routes with FastAPI's included routers opened up."""
    flat = []
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is None:
            flat.append(route)
            continue
        flat.extend(getattr(c, "starlette_route", None) or c.original_route for c in contexts())
    return flat


def message(status: int, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": text}, status_code=status, headers=headers)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts)


def describe_validation(errors: list[dict]) -> str:
    """One message naming the field(s) at fault and what is expected."""
    missing = [_field(e["loc"]) for e in errors if e.get("type") == "missing"]
    if "" in missing:  # no body at all
        return "the request body must be a JSON object"
    if missing:
        return "must pass these fields: " + ", ".join(dict.fromkeys(missing))
    err = errors[0]
    kind, field = err.get("type", ""), _field(err.get("loc", ()))
    if kind == "json_invalid":
        return "could not decode JSON body"
    if not field or kind in ("model_attributes_type", "dict_type"):
        return "the request body must be a JSON object"
    if kind == "value_error":
        return f"{field} {err.get('ctx', {}).get('error', err.get('msg', 'is invalid'))}"
    if kind.startswith("int_"):
        return f"{field} must be an integer"
    if kind == "greater_than_equal":
        return f"{field} must be at least {err.get('ctx', {}).get('ge')}"
    if kind == "less_than_equal":
        return f"{field} must be at most {err.get('ctx', {}).get('le')}"
    if kind.startswith("bool_"):
        return f"{field} must be a boolean (true/false or 1/0)"
    if kind == "string_too_long":
        return f"{field} must be at most {err.get('ctx', {}).get('max_length')} characters"
    if kind == "string_too_short":
        return f"{field} must not be empty"
    if kind in ("string_type", "list_type"):
        return f"{field} must be a {'list' if kind == 'list_type' else 'string'}"
    return f"{field}: {err.get('msg', 'invalid value')}"


def install_message_handlers(app: FastAPI) -> None:
    """Validation errors as 400, HTTP errors (405 with ``Allow``) and the unexpected as 500, all ``{"message"}``."""
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return message(400, describe_validation(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(_request)}
        return message(exc.status_code, text, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error path=%s", request.url.path)
        return message(500, "internal error; see the server log")
