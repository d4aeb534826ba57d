"""The "lost answer" fault: the cloud acts on a request, then the client never hears of it.

A create whose answer times out or whose connection breaks is the case a client cannot tell
from "nothing happened"; this middleware makes it on demand. It runs the request in full (the
server, volume or attachment exists), then, for a successful answer that a ``lost_answers``
rule picks, either holds the answer back ``seconds`` (mode ``timeout``: the client's read times
out first) or sends the status line and cuts the connection before the body (mode ``reset``).
Mode ``late`` (the request carried out after the client gave up) is applied before the handler, in
``faults.guard``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lablease.devcloud.state import Cloud

log = logging.getLogger(__name__)


class AnswerCut(Exception):
    """Raised after the status line was sent, so that the server closes the connection mid-answer."""


class LostAnswers:
    def __init__(self, app: ASGIApp, cloud: Cloud):
        self.app = app
        self.cloud = cloud

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rules = self.cloud.faults.lost_answers
        if scope["type"] != "http" or not rules or scope.get("path", "").startswith("/devcloud/admin"):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def keep(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, keep)
        status = next((m["status"] for m in held if m["type"] == "http.response.start"), 500)
        route = scope.get("route")  # set by the router while the request ran
        key = f"{scope['method']} {getattr(route, 'path', None) or '<unmatched>'}"
        rule = self._pick(key) if 200 <= status < 300 else None
        if rule is None:
            for message in held:
                await send(message)
            return
        log.info("fault lost_answer key=%s mode=%s status=%d", key, rule.mode, status)
        if rule.mode == "reset":
            await send(held[0])
            raise AnswerCut(key)  # the status line went out; the body never will
        await asyncio.sleep(rule.seconds)
        for message in held:  # long after the client gave up: nobody reads it
            await send(message)

    def _pick(self, key: str):
        with self.cloud.lock:
            for rule in self.cloud.faults.lost_answers:
                if rule.mode != "late" and fnmatch.fnmatchcase(key, rule.match) and self.cloud.chance(rule.probability):
                    return rule
        return None
