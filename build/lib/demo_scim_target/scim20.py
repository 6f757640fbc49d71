"""SCIM 2.0 front end under /scim/v2: resources, /.search, and discovery endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from .common import V2, ScimError, base_url, read_json, require_auth, scim_response
from .crud import MAX_COUNT, list_response, query, resource_routes
from .discovery import resource_types, schemas, spc20
from .patch import apply_patch20
from .store import GROUP, USER

router = APIRouter(prefix="/scim/v2", dependencies=[Depends(require_auth)])
DISCOVERY = ("ServiceProviderConfig", "Schemas", "ResourceTypes")


@router.get("/ServiceProviderConfig")
async def service_provider_config(request: Request):
    return scim_response(request, spc20(base_url(request, V2)))


@router.get("/Schemas")
async def list_schemas(request: Request):
    items = schemas(base_url(request, V2))
    return scim_response(request, list_response(V2, items, len(items), 1))


@router.get("/Schemas/{sid}")
async def get_schema(request: Request, sid: str):
    for item in schemas(base_url(request, V2)):
        if item["id"].lower() == sid.lower():
            return scim_response(request, item)
    raise ScimError(404, f"Schema {sid} not found")


@router.get("/ResourceTypes")
async def list_resource_types(request: Request):
    items = resource_types(base_url(request, V2))
    return scim_response(request, list_response(V2, items, len(items), 1))


@router.get("/ResourceTypes/{rtid}")
async def get_resource_type(request: Request, rtid: str):
    for item in resource_types(base_url(request, V2)):
        if item["id"].lower() == rtid.lower():
            return scim_response(request, item)
    raise ScimError(404, f"ResourceType {rtid} not found")


async def _search(request: Request, kinds: list[str]):
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ScimError(400, "SearchRequest must be a JSON object", "invalidSyntax")

    def joined(name: str):
        value = body.get(name)
        return ",".join(value) if isinstance(value, list) else value

    params = {"filter": body.get("filter"), "startIndex": body.get("startIndex") or 1,
              "count": body.get("count", MAX_COUNT),
              "attributes": joined("attributes"), "excludedAttributes": joined("excludedAttributes")}
    return scim_response(request, query(request, kinds, V2, params))


@router.post("/.search")
async def search_all(request: Request):
    return await _search(request, [USER, GROUP])


@router.post("/Users/.search")
async def search_users(request: Request):
    return await _search(request, [USER])


@router.post("/Groups/.search")
async def search_groups(request: Request):
    return await _search(request, [GROUP])


resource_routes(router, V2, apply_patch20)


@router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def not_found(request: Request, rest: str):
    first = rest.strip("/").split("/")[0]
    if first in DISCOVERY or rest.strip("/") in ("Users", "Groups", ".search"):
        raise ScimError(405, f"Method {request.method} not allowed on /{rest}")
    raise ScimError(404, f"No such endpoint /scim/v2/{rest}")
