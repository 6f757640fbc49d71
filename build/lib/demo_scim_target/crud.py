"""Resource handlers shared by the 1.1 and 2.0 routers (dialect = "v1" / "v2")."""

from __future__ import annotations

import json
import re
from typing import Callable

from fastapi import Request
from fastapi.responses import Response

from .common import (CORE11, LIST20, V1, V2, ScimError, render, scim_response, select_attributes,
                     state_of, store_of)
from .filters import FilterError, compile_filter
from .store import GROUP, UNIQUE, Record, clean

MAX_COUNT = 200


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ScimError(400, f"'{name}' must be an integer", "invalidValue") from exc


def _headers(ignored: list[str], rec: Record | None = None) -> dict[str, str] | None:
    headers = {"X-Demo-Ignored-Attributes": ",".join(ignored)} if ignored else {}
    if rec is not None:
        headers["ETag"] = etag(rec)
    return headers or None


def etag(rec: Record) -> str:
    """The resource's version as an entity tag, the same as its ``meta.version`` (RFC 7644 §3.14)."""
    return f'W/"{rec.version}"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag[:2].upper() == "W/" else tag


def check_if_match(request: Request, rec: Record) -> None:
    """``If-Match`` on a write: ``*`` or a list of tags, compared weakly (SCIM versions are weak tags); none of
    them the resource's version -> 412 and nothing is changed (RFC 7644 §3.14, RFC 7232 §3.1)."""
    header = request.headers.get("if-match")
    if header is None:
        return
    tags = [t for t in (part.strip() for part in header.split(",")) if t]
    if "*" in tags or _opaque(etag(rec)) in {_opaque(t) for t in tags}:
        return
    raise ScimError(412, "Failed to update: the resource changed on the server (If-Match does not match "
                         f"version {etag(rec)})", headers={"ETag": etag(rec)})


def _one(request: Request, rec: Record, dialect: str) -> dict:
    out = render(request, rec, dialect)
    if dialect == V2:
        out = select_attributes(out, request.query_params.get("attributes"),
                                request.query_params.get("excludedAttributes"))
    return out


def list_response(dialect: str, resources: list[dict], total: int, start: int) -> dict:
    body = {"schemas": [CORE11 if dialect == V1 else LIST20], "totalResults": total,
            "startIndex": start, "itemsPerPage": len(resources), "Resources": resources}
    return body


_UNIQUE_EQ = re.compile(r'\s*(\w+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*', re.IGNORECASE)


def _candidates(store, kind: str, params: dict) -> list:
    """Look-ups by the unique attribute (`userName eq "…"`, Okta's find-user) go through the store's index
    instead of rendering every record; the full filter still runs on what is left."""
    match = _UNIQUE_EQ.fullmatch(params.get("filter") or "")
    if match and match.group(1).lower() == UNIQUE[kind].lower():
        try:
            wanted = json.loads(f'"{match.group(2)}"')
        except ValueError:
            return store.list(kind)
        return store.find(kind, wanted)
    return store.list(kind)


def query(request: Request, kinds: list[str], dialect: str, params: dict) -> dict:
    """Filter + paginate over the given kinds (params: filter, startIndex, count,
    attributes, excludedAttributes)."""
    store = store_of(request)
    pred: Callable[[dict], bool] | None = None
    if params.get("filter"):
        try:
            pred = compile_filter(params["filter"])
        except FilterError as exc:
            raise ScimError(400, f"Invalid filter: {exc}", "invalidFilter") from exc
    rendered = [render(request, rec, dialect) for kind in kinds for rec in _candidates(store, kind, params)]
    if pred is not None:
        rendered = [r for r in rendered if pred(r)]
    start = max(int(params.get("startIndex") or 1), 1)
    count = params.get("count")
    count = MAX_COUNT if count is None else min(max(int(count), 0), MAX_COUNT)
    page = rendered[start - 1:start - 1 + count]
    if dialect == V2:
        page = [select_attributes(r, params.get("attributes"), params.get("excludedAttributes"))
                for r in page]
    return list_response(dialect, page, len(rendered), start)


async def list_resources(request: Request, kind: str, dialect: str) -> Response:
    params = {"filter": request.query_params.get("filter"),
              "startIndex": _int_param(request, "startIndex", 1),
              "count": _int_param(request, "count", 100) if request.query_params.get("count") else None,
              "attributes": request.query_params.get("attributes"),
              "excludedAttributes": request.query_params.get("excludedAttributes")}
    return scim_response(request, query(request, [kind], dialect, params))


async def get_resource(request: Request, kind: str, rid: str, dialect: str) -> Response:
    rec = store_of(request).require(kind, rid)
    return scim_response(request, _one(request, rec, dialect), headers=_headers([], rec))


def _body_dict(body) -> dict:
    if not isinstance(body, dict):
        raise ScimError(400, "Request body must be a JSON object", "invalidSyntax")
    return body


async def create_resource(request: Request, kind: str, dialect: str, body) -> Response:
    attrs, password, ignored = clean(kind, _body_dict(body))
    rec = store_of(request).create(kind, attrs, password)
    out = _one(request, rec, dialect)
    headers = {"Location": out["meta"]["location"], **(_headers(ignored, rec) or {})}
    return scim_response(request, out, 201, headers)


async def replace_resource(request: Request, kind: str, rid: str, dialect: str, body) -> Response:
    """PUT replaces every attribute the target keeps (RFC 7644 §3.5.1 allows it): one the body leaves out is
    cleared, read-only ones (``meta``, a user's ``groups``) are ignored."""
    store = store_of(request)
    check_if_match(request, store.require(kind, rid))
    attrs, password, ignored = clean(kind, _body_dict(body))
    rec = store.replace(kind, rid, attrs, password)
    return scim_response(request, _one(request, rec, dialect), 200, _headers(ignored, rec))


async def delete_resource(request: Request, kind: str, rid: str) -> Response:
    store = store_of(request)
    check_if_match(request, store.require(kind, rid))
    store.delete(kind, rid)
    return Response(status_code=204)


async def patch_resource(request: Request, kind: str, rid: str, dialect: str,
                         apply: Callable[[dict, object], dict], body) -> Response:
    state, store = state_of(request), store_of(request)
    rec = store.require(kind, rid)
    check_if_match(request, rec)
    patched = apply(rec.attrs, body)
    attrs, password, ignored = clean(kind, patched)
    for member in attrs.get("members") or []:
        if not isinstance(member, dict) or "value" not in member:
            raise ScimError(400, "Each member needs a 'value'", "invalidValue")
    rec = store.replace(kind, rid, attrs, password)
    if "patch-204" in state.config.quirks:
        return Response(status_code=204, headers=_headers(ignored, rec))
    return scim_response(request, _one(request, rec, dialect), 200, _headers(ignored, rec))


def resource_routes(router, dialect: str, patch_fn: Callable[[dict, object], dict]) -> None:
    """Register Users/Groups CRUD routes on a router for one dialect."""
    from .common import read_json
    from .store import USER

    for kind, endpoint in ((USER, "Users"), (GROUP, "Groups")):
        def make(kind=kind):
            async def list_(request: Request):
                return await list_resources(request, kind, dialect)

            async def get_(request: Request, rid: str):
                return await get_resource(request, kind, rid, dialect)

            async def post_(request: Request):
                return await create_resource(request, kind, dialect, await read_json(request))

            async def put_(request: Request, rid: str):
                return await replace_resource(request, kind, rid, dialect, await read_json(request))

            async def patch_(request: Request, rid: str):
                return await patch_resource(request, kind, rid, dialect, patch_fn,
                                            await read_json(request))

            async def delete_(request: Request, rid: str):
                return await delete_resource(request, kind, rid)
            return list_, get_, post_, put_, patch_, delete_

        list_, get_, post_, put_, patch_, delete_ = make()
        router.add_api_route(f"/{endpoint}", list_, methods=["GET"])
        router.add_api_route(f"/{endpoint}", post_, methods=["POST"], status_code=201)
        router.add_api_route(f"/{endpoint}/{{rid}}", get_, methods=["GET"])
        router.add_api_route(f"/{endpoint}/{{rid}}", put_, methods=["PUT"])
        router.add_api_route(f"/{endpoint}/{{rid}}", patch_, methods=["PATCH"])
        router.add_api_route(f"/{endpoint}/{{rid}}", delete_, methods=["DELETE"], status_code=204)
