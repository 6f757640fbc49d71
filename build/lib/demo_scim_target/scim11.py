"""SCIM 1.1 front end under /scim/v1 (what Okta's agent speaks for bases ending in /v1/)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from .common import V1, ScimError, require_auth, scim_response, state_of
from .crud import resource_routes
from .discovery import spc11
from .patch import apply_patch11

router = APIRouter(prefix="/scim/v1", dependencies=[Depends(require_auth)])


@router.get("/ServiceProviderConfigs")
async def service_provider_configs(request: Request):
    return scim_response(request, spc11(state_of(request).config.name))


resource_routes(router, V1, apply_patch11)


@router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def not_found(request: Request, rest: str):
    if rest.strip("/") in ("ServiceProviderConfigs", "Users", "Groups"):
        raise ScimError(405, f"Method {request.method} not allowed on /{rest}")
    raise ScimError(404, f"No such endpoint /scim/v1/{rest}")
