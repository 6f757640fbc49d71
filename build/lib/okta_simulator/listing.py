"""Paged answers as Okta sends them: the page as a JSON array, a `Link: <…>; rel="self"` header and, while more
remain, a `Link: <…>; rel="next"` one."""
from __future__ import annotations

from bisect import bisect_right
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse

from .errors import invalid
from .sim import Simulator


def link(sim: Simulator, path: str, params: dict, rel: str) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f'<{sim.settings.org_url}{path}{"?" + query if query else ""}>; rel="{rel}"'


def respond(body, sim: Simulator, request: Request, next_params: dict | None) -> JSONResponse:
    response = JSONResponse(body)
    response.headers.append("Link", link(sim, request.url.path, dict(request.query_params), "self"))
    if next_params is not None:
        response.headers.append("Link", link(sim, request.url.path, next_params, "next"))
    return response


def page_by_id(items: list, key, after: str | None, limit: int) -> tuple[list, str | None]:
    """The page after the item whose key is `after` (400 if none has it) and the cursor of the next page."""
    start = 0
    if after is not None:
        ids = [key(i) for i in items]
        if after not in ids:
            raise invalid("after: The 'after' parameter is invalid")
        start = ids.index(after) + 1
    chunk = items[start:start + limit]
    more = start + limit < len(items)
    return chunk, (key(chunk[-1]) if more and chunk else None)


def page_after_id(items: list, key, after: str | None, limit: int) -> tuple[list, str | None]:
    """Like `page_by_id` over items sorted by `key`: the page starts after `after` (found by bisection, so it need
    not still exist)."""
    start = 0 if after is None else bisect_right(items, after, key=key)
    chunk = items[start:start + limit]
    more = start + limit < len(items)
    return chunk, (key(chunk[-1]) if more and chunk else None)
