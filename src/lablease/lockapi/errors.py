"""Every error of the lock API is ``{"message": ...}`` with paddles' status codes, never FastAPI's 422."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lablease.store.errors import StoreError

log = logging.getLogger(__name__)


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StoreError)
    async def _store_error(_request: Request, exc: StoreError) -> JSONResponse:
        return message(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return message(400, describe_validation(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = exc.detail if isinstance(exc.detail, str) else "request failed"
        return message(exc.status_code, text, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error path=%s", request.url.path)
        return message(500, "internal error; see the server log")
