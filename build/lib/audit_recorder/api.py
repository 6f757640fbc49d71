"""The audit API, ``GET /audit`` (filters: user, app, status, event, trace, time range; newest first by the step's
time, paged with the ``next`` token): read-only, a token with the ``read`` right required
(:mod:`okta_bridge.apiauth`), the ``Host`` header checked. ``/healthz`` is a separate app on its own port
(``AUDIT_HEALTH_PORT``), unauthenticated for probes: it carries no personal data.

The OpenAPI document is not served (``AUDIT_OPENAPI=true`` serves it at ``/openapi.json``, without a token);
it is generated into ``docs/audit-api.openapi.json`` by ``python -m audit_recorder.api > docs/audit-api.openapi.json``
and a unit test fails when that file is stale.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.middleware.trustedhost import TrustedHostMiddleware

from okta_bridge.apiauth import ApiToken, ApiTokens
from okta_bridge.contracts import OKTA_ID_PATTERN, AuditStep
from okta_bridge.stores.audit import AuditStore, BadPageToken

__all__ = ["create_api", "create_health", "openapi_document"]

TITLE = "okta-onprem-bridge audit"
_bearer = HTTPBearer(auto_error=False, description="a token of API_TOKENS with the reader or operator role")


def _require(tokens: ApiTokens, right: str):
    async def caller(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> ApiToken:
        token = tokens.check(credentials.credentials if credentials else None)
        if token is None:
            raise HTTPException(401, "a valid bearer token is required" if len(tokens)
                                else "no API tokens are configured (API_TOKENS)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not token.grants(right):
            raise HTTPException(403, f"the token's role ({token.role}) does not allow {right}")
        return token
    return caller


def create_api(store: AuditStore | None, tokens: ApiTokens, allowed_hosts: list[str], lifespan: Any = None,
               serve_openapi: bool = False) -> FastAPI:
    app = FastAPI(title=TITLE, version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if serve_openapi else None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost"])
    reader = _require(tokens, "read")

    @app.exception_handler(RequestValidationError)
    async def bad_filter(_: Request, exc: RequestValidationError) -> JSONResponse:
        """A filter that is not valid (a malformed id or date, a page size out of 1-1000): 400, naming the filter and
        what is wrong, never echoing the value."""
        reasons = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', 'not valid')}"
                   for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(reasons)[:500]}, status_code=400)

    @app.get("/audit", summary="The audit trail, newest first", dependencies=[Depends(reader)],
             responses={400: {"description": "a filter that is not valid, or a page token that is not one; "
                                             "`detail` says which and why"}})
    async def audit(
        # ids as Okta writes them (20 letters and digits) or a 400: nothing else reaches the database's query
        user: str | None = Query(None, pattern=OKTA_ID_PATTERN, description="Okta user id (00u…)"),
        group: str | None = Query(None, pattern=OKTA_ID_PATTERN, description="Okta group id (00g…)"),
        app_id: str | None = Query(None, alias="app", pattern=OKTA_ID_PATTERN, description="Okta app id (0oa…)"),
        status: AuditStep | None = Query(None, description="the step: applied, retried, dead_lettered, …"),
        event: str | None = Query(None, description="System Log event uuid"),
        trace_id: str | None = Query(None, alias="trace"),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = Query(100, ge=1, le=1000),
        after: str | None = Query(None, description="the `next` value of the previous page"),
    ) -> dict[str, Any]:
        filters = {"okta_user_id": user, "okta_group_id": group, "app_id": app_id, "event_uuid": event,
                   "trace_id": trace_id, "step": status.value if status else None}
        assert store is not None, "a document-only app serves no requests"
        try:
            items, token = await store.page(filters, since, until, limit, after)
        except BadPageToken as exc:
            raise HTTPException(400, str(exc)) from None
        return {"items": items, "next": token}

    return app


def create_health(health: Any) -> FastAPI:
    """``GET /healthz``: up or not, and counters; no personal data, no token (probes)."""
    app = FastAPI(title=TITLE + " health", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        ok, detail = await health()
        if not ok:
            raise HTTPException(503, detail)
        return {"status": "ok", **detail}

    return app


def openapi_document() -> dict[str, Any]:
    """The audit API's OpenAPI document, as committed in ``docs/audit-api.openapi.json``."""
    return create_api(None, ApiTokens([]), ["*"], serve_openapi=True).openapi()


if __name__ == "__main__":
    print(json.dumps(openapi_document(), indent=2, sort_keys=True))
