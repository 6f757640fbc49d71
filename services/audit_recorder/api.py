"""``GET /audit`` (filters: user, app, status, event, trace, time range; newest first by the step's time, paged
with the ``next`` token) and ``/healthz``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from fastapi import FastAPI, HTTPException, Query
from pymongo.asynchronous.database import AsyncDatabase

from okta_bridge.contracts import AuditStep


def add_routes(app: FastAPI, db_of: Any, health: Any) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        ok, detail = await health()
        if not ok:
            raise HTTPException(503, detail)
        return {"status": "ok", **detail}

    @app.get("/audit")
    async def audit(
        user: str | None = Query(None, description="Okta user id (00u…)"),
        group: str | None = Query(None, description="Okta group id (00g…)"),
        app_id: str | None = Query(None, alias="app", description="Okta app id (0oa…)"),
        status: AuditStep | None = Query(None, description="the step: applied, retried, dead_lettered, …"),
        event: str | None = Query(None, description="System Log event uuid"),
        trace_id: str | None = Query(None, alias="trace"),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = Query(100, ge=1, le=1000),
        after: str | None = Query(None, description="the `next` value of the previous page"),
    ) -> dict[str, Any]:
        query: dict[str, Any] = {}
        for field, value in (("okta_user_id", user), ("okta_group_id", group), ("app_id", app_id), ("event_uuid", event), ("trace_id", trace_id)):
            if value:
                query[field] = value
        if status:
            query["step"] = status.value
        if since or until:
            query["at"] = {k: v for k, v in (("$gte", since), ("$lt", until)) if v}
        if after:  # keyset paging on (at, _id): stable while records keep arriving
            try:
                at_text, _, oid = after.rpartition("~")
                at, last = datetime.fromisoformat(at_text), ObjectId(oid)
            except (ValueError, InvalidId):
                raise HTTPException(400, "after: not a page token") from None
            query = {"$and": [query, {"$or": [{"at": {"$lt": at}}, {"at": at, "_id": {"$lt": last}}]}]}
        db: AsyncDatabase = db_of()
        docs = await db.audit.find(query).sort([("at", -1), ("_id", -1)]).limit(limit).to_list(limit)
        items = [{**{k: v for k, v in d.items() if k != "_id"}, "id": str(d["_id"])} for d in docs]
        token = f"{docs[-1]['at'].isoformat()}~{docs[-1]['_id']}" if len(docs) == limit else None
        return {"items": items, "next": token}
