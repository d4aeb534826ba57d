"""Every error of the lock API is ``{"message": ...}`` with paddles' status codes, never FastAPI's 422."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from lablease.provision.errorkinds import lock_api_answer
from lablease.provision.errors import ProvisionError
from lablease.store.errors import StoreError
from lablease.web.errors import Message, describe_validation, install_message_handlers, message

__all__ = ["MEANING", "Message", "describe_validation", "error_docs", "install_error_handlers", "message",
           "unlock_one_status"]

log = logging.getLogger(__name__)


# What each error status means, for the OpenAPI document (docs/api-limits.md lists them too).
MEANING = {
    400: "invalid request: a field missing, of the wrong type or out of range, a body that is not a JSON object, "
         "nested deeper than 32 levels, text with NUL or an unpaired surrogate (body, path or query), an "
         "encoded slash in the path; or paddles' 400 for a request the nodes' state refuses",
    401: "no admin token (`Authorization: Bearer <token>`); only when the server has an admin_token",
    403: "refused: a lock change the lock rules forbid, or a wrong admin token",
    404: "no such node",
    409: "another reconciler pass is running; try again in a moment",
    413: "the request body is over max_body_bytes (1 MiB by default)",
    502: "the cloud did not answer as expected",
    503: "the database kept failing after retries (encountered a DB error; please retry)",
}


# teuthology's unlock_one retries any answer but 403 ten times, then dies with a traceback; a 403 makes it
# report the server's message. So when the lab service could not finish a single cloud node's unlock on
# ``PUT /nodes/<name>/lock/`` (503: its destroy failed, the node stays locked in destroy-failed), the
# answer is 403 with the same message. lock_many and unlock_many keep their 503.
UNLOCK_ONE_STATUS = {503: 403}


def unlock_one_status(status: int) -> int:
    """What ``PUT /nodes/<name>/lock/`` answers for a cloud node's unlock that got ``status`` (UNLOCK_ONE_STATUS)."""
    return UNLOCK_ONE_STATUS.get(status, status)


def error_docs(*codes: int, said: dict[int, str] | None = None) -> dict[int | str, dict]:
    """OpenAPI ``responses`` for the error statuses ``codes``; ``said`` replaces the meaning of some of them."""
    said = said or {}
    return {code: {"model": Message, "description": said.get(code, MEANING[code])} for code in codes}


def install_error_handlers(app: FastAPI) -> None:
    install_message_handlers(app)

    @app.exception_handler(StoreError)
    async def _store_error(_request: Request, exc: StoreError) -> JSONResponse:
        return message(exc.status, exc.message)

    @app.exception_handler(ProvisionError)
    async def _cloud(_request: Request, exc: ProvisionError) -> JSONResponse:
        # A dependency (the cloud) failed: the status and words are the kind's (provision/errorkinds.py).
        log.warning("cloud error path=%s kind=%s: %s", _request.url.path, exc.kind.value, exc)
        return message(*lock_api_answer(exc.kind, exc))
