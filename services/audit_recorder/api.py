"""``GET /audit`` (filters: user, app, status, event, trace, time range; newest first by the step's time, paged
with the ``next`` token) and ``/healthz``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Query

from okta_bridge.contracts import OKTA_ID_PATTERN, AuditStep
from okta_bridge.stores.audit import AuditStore, BadPageToken


def add_routes(app: FastAPI, store: AuditStore, health: Any) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        ok, detail = await health()
        if not ok:
            raise HTTPException(503, detail)
        return {"status": "ok", **detail}

    @app.get("/audit")
    async def audit(
        # ids as Okta writes them (20 letters and digits) or a 422: nothing else reaches the database's query
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
        try:
            items, token = await store.page(filters, since, until, limit, after)
        except BadPageToken as exc:
            raise HTTPException(400, str(exc)) from None
        return {"items": items, "next": token}
