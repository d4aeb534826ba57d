"""Fault injection and request counting, applied to every API request before its handler runs."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
import time

from fastapi import Request

from lablease.devcloud.config import FaultConfig, ResourceFault
from lablease.devcloud.errors import CloudError, style_for_path
from lablease.devcloud.state import Cloud

log = logging.getLogger(__name__)


def request_key(request: Request) -> str:
    """"METHOD /path/{template}" of the matched route, so counts group requests like an API reference does."""
    route = request.scope.get("route")
    template = getattr(route, "path", None) or "<unmatched>"
    return f"{request.method} {template}"


def count(cloud: Cloud, key: str) -> None:
    with cloud.lock:
        cloud.request_counts[key] = cloud.request_counts.get(key, 0) + 1


def set_faults(cloud: Cloud, faults: FaultConfig) -> None:
    """Replace the active faults; the seed restarts the random sequence so runs repeat."""
    with cloud.lock:
        cloud.faults = faults
        cloud.rng = random.Random(faults.seed)
        cloud.rate_windows.clear()
    log.info("faults set rate_limits=%d errors=%d latency=%d", len(faults.rate_limits), len(faults.errors),
             len(faults.latency))


def resource_fault(cloud: Cloud, fault: ResourceFault, name: str | None) -> bool:
    """Whether this resource (server, volume, attachment, delete) is to fail."""
    if fault.probability <= 0 or not fnmatch.fnmatchcase(name or "", fault.match_name):
        return False
    with cloud.lock:
        return cloud.chance(fault.probability)


async def guard(cloud: Cloud, request: Request) -> None:
    """Count the request, then add latency, rate-limit it or fail it as the configured faults say."""
    key = request_key(request)
    count(cloud, key)
    style = style_for_path(request.url.path)
    faults = cloud.faults
    delay = sum(rule.seconds for rule in faults.latency if fnmatch.fnmatchcase(key, rule.match))
    if delay:
        await asyncio.sleep(delay)
    late = _late(cloud, key)
    if late:  # the client times out meanwhile; the request is carried out all the same
        log.info("fault lost_answer key=%s mode=late seconds=%.2f", key, late)
        await asyncio.sleep(late)
    now = time.monotonic()
    with cloud.lock:
        for index, rule in enumerate(faults.rate_limits):
            if not fnmatch.fnmatchcase(key, rule.match):
                continue
            window = [t for t in cloud.rate_windows.get(index, []) if now - t < rule.per_seconds]
            if len(window) >= rule.requests:
                cloud.rate_windows[index] = window
                log.info("fault rate_limit key=%s status=%d", key, rule.status)
                raise _rate_limited(rule.status, rule.retry_after, rule.requests, rule.per_seconds, style)
            window.append(now)
            cloud.rate_windows[index] = window
        for rule in faults.errors:
            if fnmatch.fnmatchcase(key, rule.match) and cloud.chance(rule.probability):
                log.info("fault error_500 key=%s", key)
                raise CloudError(500, "The server has either erred or is incapable of performing the requested "
                                      "operation.", style)


def _late(cloud: Cloud, key: str) -> float:
    """Seconds this request waits before it is carried out, by the first ``late`` lost-answer rule that picks it."""
    with cloud.lock:
        for rule in cloud.faults.lost_answers:
            if rule.mode == "late" and fnmatch.fnmatchcase(key, rule.match) and cloud.chance(rule.probability):
                return rule.seconds
    return 0.0


def _rate_limited(status: int, retry_after: int, requests: int, per_seconds: float, style) -> CloudError:
    headers = {"Retry-After": str(retry_after)}
    if status == 413:
        # Nova's rate limiter: 413 with an overLimit body that repeats retryAfter.
        return CloudError(413, "This request was rate-limited.", "nova", kind="overLimit", headers=headers,
                          extra={"retryAfter": str(retry_after),
                                 "details": f"Only {requests} request(s) can be made every {per_seconds:g} seconds."})
    return CloudError(429, "Too many requests; retry after the time in Retry-After.", style, headers=headers)
