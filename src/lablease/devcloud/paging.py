"""Listings in pages, as Nova, Cinder and Glance cut them: ``limit`` and ``marker``, and a link to the next page.

The most one page holds is the cloud's ``page_size`` (Nova's ``[api] max_limit``, Cinder's ``osapi_max_limit``,
Glance's ``api_limit_max``; unset: no limit), whatever ``limit`` asks. A page that is full carries the link to the
next one, even when nothing follows (the services decide by the page, not by what is left): a client reads until a
page comes without one.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence, TypeVar
from urllib.parse import urlencode

from fastapi import Request

from lablease.devcloud.errors import CloudError, Style

T = TypeVar("T")


def page(items: Sequence[T], request: Request, page_size: int | None, key: Callable[[T], str],
         style: Style) -> tuple[list[T], str | None]:
    """This request's page of ``items`` (in listing order) and the marker of the next page (None: no next link)."""
    q = request.query_params
    rest = list(items)
    if "marker" in q:
        ids = [key(i) for i in rest]
        if q["marker"] not in ids:
            raise CloudError(400, _marker_message(q["marker"], style), style)
        rest = rest[ids.index(q["marker"]) + 1:]
    limit = page_size
    if "limit" in q:
        if not re.fullmatch(r"[0-9]{1,9}", q["limit"]):
            raise CloudError(400, _limit_message(q["limit"], style), style)
        limit = int(q["limit"]) if page_size is None else min(int(q["limit"]), page_size)
    if limit is None:
        return rest, None
    chunk = rest[:limit]
    return chunk, (key(chunk[-1]) if chunk and len(chunk) == limit else None)


def _marker_message(marker: str, style: Style) -> str:
    if style == "glance":
        return f"Invalid marker. Image {marker} could not be found."
    return f"marker [{marker}] not found"


def _limit_message(limit: str, style: Style) -> str:
    if style == "glance":
        return f"Invalid limit value: {limit[:20]!r}. It must be a non-negative integer."
    return "Invalid input for query parameters limit. Value: " f"{limit[:20]}. It must be a non-negative integer."


def next_links(request: Request, url: str, marker: str | None) -> list[dict[str, Any]]:
    """Nova's and Cinder's ``<collection>_links``: the request's own query with the new marker."""
    if marker is None:
        return []
    params = dict(sorted(request.query_params.items()))
    params["marker"] = marker
    return [{"rel": "next", "href": f"{url}?{urlencode(params)}"}]
