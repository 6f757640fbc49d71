"""`/_admin`: act as an Okta admin (each action writes the System Log events Okta writes; users and assignments
also in bulk), inject faults, set the URL length limit, read call counters. No SSWS here, and no URL limit;
this is the test harness's side door."""
from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from . import apps_actions as apps
from . import groups_actions as groups
from . import users_actions as users
from .admin_bulk import build_bulk_router
from .ids import parse_iso
from .plans import BUCKETS
from .ratelimit import EDITS
from .sim import Simulator


class NewUser(BaseModel):
    profile: dict
    status: str = "ACTIVE"


class NewPassword(BaseModel):
    password: str = Field(..., repr=False, description="kept only as a hash (okta_simulator.passwords)")


class NewApp(BaseModel):
    label: str
    name: str | None = None
    provisioning: bool = Field(False, description="Okta provisions the app itself (group push mappings exist)")


class Assignment(BaseModel):
    userId: str
    userName: str | None = None
    profile: dict = Field(default_factory=dict)


class NewGroup(BaseModel):
    name: str
    description: str = ""


class Injection(BaseModel):
    bucket: str = Field("*", description=f"one of {BUCKETS} or * for any")
    status: int | None = Field(429, description="429 or 5xx instead of the answer; null: the answer, late and/or "
                                                "edited")
    count: int = 1
    delay_s: float = Field(0.0, ge=0, le=120, description="the answer, computed when asked, is sent this much later")
    path_regex: str | None = Field(None, description="only requests whose path matches")
    edit: str | None = Field(None, description=f"one of {EDITS}: the answer of GET /api/v1/users is changed "
                                                 "(status null; only such requests take the fault)")
    reset_s: float | None = Field(None, ge=0, le=60, description="a 429 whose X-Rate-Limit-Reset is this many seconds "
                                                                "ahead (Remaining 0) instead of the minute window's "
                                                                "end: as Okta's concurrency limit answers")


class PlanChange(BaseModel):
    plan: str
    tokenShare: float | None = None


class Limits(BaseModel):
    model_config = ConfigDict(frozen=True)
    maxUrlBytes: int = Field(..., ge=1, description="an /api request whose target (path + query, as sent) is "
                                                     "longer is answered 414")


def build_admin_router(sim: Simulator) -> APIRouter:
    r = APIRouter(prefix="/_admin")

    @r.get("/health")
    async def health():
        return {"status": "ok"}

    r.include_router(build_bulk_router(sim))

    @r.post("/users")
    async def create_user(body: NewUser):
        return {"id": users.create_user(sim, body.profile, body.status).id}

    @r.post("/users/{user_id}/profile")
    async def update_profile(user_id: str, profile: dict = Body(..., embed=True)):
        return {"id": users.update_profile(sim, user_id, profile).id}

    @r.post("/users/{user_id}/primary-email")
    async def update_primary_email(user_id: str, email: str = Body(..., embed=True)):
        return {"id": users.update_primary_email(sim, user_id, email).id}

    @r.post("/users/{user_id}/password")
    async def set_password(user_id: str, body: NewPassword):
        return {"id": users.set_password(sim, user_id, body.password).id}

    @r.post("/users/{user_id}/lifecycle/{action}")
    async def lifecycle(user_id: str, action: str):
        user = users.transition(sim, user_id, action)
        return {"id": user.id, "status": user.status}

    @r.delete("/users/{user_id}")
    async def delete_user(user_id: str):
        users.delete_user(sim, user_id)
        return {"id": user_id}

    @r.post("/apps")
    async def create_app(body: NewApp):
        return {"id": apps.create_app(sim, body.label, body.name, provisioning=body.provisioning).id}

    @r.post("/apps/{app_id}/users")
    async def assign(app_id: str, body: Assignment):
        au = apps.assign_user(sim, app_id, body.userId, body.userName, body.profile)
        return {"id": au.user_id, "appUserId": au.id}

    @r.delete("/apps/{app_id}/users/{user_id}")
    async def unassign(app_id: str, user_id: str):
        apps.unassign_user(sim, app_id, user_id)
        return {"id": user_id}

    @r.post("/apps/{app_id}/users/{user_id}/username")
    async def change_username(app_id: str, user_id: str, userName: str = Body(..., embed=True)):
        return {"id": apps.change_username(sim, app_id, user_id, userName).user_id}

    @r.post("/apps/{app_id}/users/{user_id}/profile")
    async def app_user_profile(app_id: str, user_id: str, profile: dict = Body(..., embed=True),
                               eventType: str = Body("application.user_membership.update", embed=True)):
        return {"id": apps.update_app_user_profile(sim, app_id, user_id, profile, event_type=eventType).user_id}

    @r.post("/apps/{app_id}/users/{user_id}/restore")
    async def restore_assignment(app_id: str, user_id: str):
        return {"id": apps.restore_assignment(sim, app_id, user_id).user_id}

    @r.post("/groups")
    async def create_group(body: NewGroup):
        return {"id": groups.create_group(sim, body.name, body.description).id}

    @r.post("/groups/{group_id}/profile")
    async def update_group(group_id: str, name: str | None = Body(None), description: str | None = Body(None)):
        return {"id": groups.update_group(sim, group_id, name, description).id}

    @r.delete("/groups/{group_id}")
    async def delete_group(group_id: str):
        groups.delete_group(sim, group_id)
        return {"id": group_id}

    @r.put("/groups/{group_id}/users/{user_id}")
    async def add_member(group_id: str, user_id: str):
        groups.add_member(sim, group_id, user_id)
        return {"id": user_id}

    @r.delete("/groups/{group_id}/users/{user_id}")
    async def remove_member(group_id: str, user_id: str):
        groups.remove_member(sim, group_id, user_id)
        return {"id": user_id}

    @r.put("/apps/{app_id}/groups/{group_id}")
    async def assign_group(app_id: str, group_id: str):
        groups.assign_group(sim, app_id, group_id)
        return {"id": group_id}

    @r.delete("/apps/{app_id}/groups/{group_id}")
    async def unassign_group(app_id: str, group_id: str):
        groups.unassign_group(sim, app_id, group_id)
        return {"id": group_id}

    @r.post("/faults/reject-cursors")
    async def reject_cursors():
        sim.log.reject_cursors()
        return {"status": "ok"}

    @r.post("/faults/expire")
    async def expire(before: str = Body(..., embed=True)):
        return {"dropped": sim.log.expire_before(parse_iso(before))}

    @r.post("/faults/inject")
    async def inject(body: Injection):
        try:
            sim.faults.inject(body.bucket, body.status, body.count, body.delay_s, body.path_regex, body.edit,
                              body.reset_s)
        except (ValueError, re.error) as exc:
            raise HTTPException(422, str(exc)) from None
        return {"status": "ok"}

    @r.delete("/faults")
    async def clear_faults():
        sim.faults.clear()
        return {"status": "ok"}

    @r.post("/plan")
    async def set_plan(body: PlanChange):
        sim.limiter.set_plan(body.plan, body.tokenShare)
        return {"plan": sim.limiter.plan, "tokenShare": sim.limiter.share}

    @r.get("/limits")
    async def get_limits():
        return {"maxUrlBytes": sim.settings.max_url_bytes}

    @r.post("/limits")
    async def set_limits(body: Limits):
        sim.settings.max_url_bytes = body.maxUrlBytes
        return {"maxUrlBytes": sim.settings.max_url_bytes}

    @r.get("/stats")
    async def stats():
        return {**sim.limiter.stats(), "faults": {"pending": sim.faults.pending(), "used": sim.faults.used}}

    @r.get("/events")
    async def events():
        return JSONResponse(sim.log.all())  # plain JSON already: FastAPI's encoder would take seconds on 30,000

    @r.post("/events/raw")
    async def append_raw_event(event: Any = Body(...)):
        """Append one event exactly as given (malformed, unknown type, not even an object) to the System Log."""
        sim.log.append_raw(event, sim.now())
        return {"status": "ok"}

    @r.post("/reset")
    async def reset():
        sim.reset()
        return {"status": "ok", "adminUserId": sim.admin.id}

    return r
