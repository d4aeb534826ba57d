"""Log lines an operator can read: a dashboard's refreshes stay out of the INFO log, and an error line is at
most 400 characters (a cloud's answer can be kilobytes long)."""

from __future__ import annotations

import asyncio
import io
import logging

import pytest

from lablease.logs import MAX_ERROR_LINE, AccessLog, RedactingFormatter, FORMAT


def _answer(status: int):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
    return app


@pytest.mark.parametrize("method, status, level", [
    ("GET", 200, logging.DEBUG), ("HEAD", 304, logging.DEBUG), ("GET", 404, logging.INFO),
    ("GET", 503, logging.INFO), ("POST", 200, logging.INFO), ("PUT", 403, logging.INFO),
])
def test_successful_reads_are_access_lines_at_debug_and_changes_and_refusals_at_info(caplog, method, status, level):
    caplog.set_level(logging.DEBUG, logger="lablease.access")
    scope = {"type": "http", "method": method, "path": "/ui/nodes", "client": ("127.0.0.9", 1)}

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    asyncio.run(AccessLog(_answer(status))(scope, receive, send))
    [record] = caplog.records
    assert record.levelno == level and f"method={method} path=/ui/nodes status={status}" in record.getMessage()


def _formatted(level: int, text: str, exc: bool = False) -> str:
    logger = logging.getLogger("test.cut")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(FORMAT))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        if exc:
            try:
                raise RuntimeError("boom " + "y" * 600)
            except RuntimeError:
                logger.log(level, text, exc_info=True)
        else:
            logger.log(level, text)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_an_error_line_is_cut_at_400_characters_saying_how_many_more_there_were():
    lines = _formatted(logging.ERROR, "launch failed node=n1 error=" + "x" * 1000).splitlines()
    assert len(lines) == 1 and len(lines[0]) == MAX_ERROR_LINE == 400
    assert lines[0].endswith("more characters)")


def test_a_traceback_under_an_error_line_is_kept_whole_and_info_lines_are_not_cut():
    text = _formatted(logging.ERROR, "launch failed " + "x" * 1000, exc=True)
    first, *rest = text.splitlines()
    assert len(first) == 400 and "Traceback" in rest[0] and any(len(line) > 600 for line in rest)
    assert len(_formatted(logging.INFO, "z" * 1000).rstrip("\n")) > 1000
