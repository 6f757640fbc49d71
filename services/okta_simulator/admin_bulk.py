"""`/_admin` in bulk, for large orgs (10,000 users in seconds): each item is done exactly as its single
endpoint does it, with the same System Log events; nothing is done unless every item is valid."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from . import apps_actions as apps
from . import users_actions as users
from .sim import Simulator


class BulkUser(BaseModel):
    model_config = ConfigDict(frozen=True)
    profile: dict
    status: str = "ACTIVE"


class BulkUsers(BaseModel):
    model_config = ConfigDict(frozen=True)
    users: list[BulkUser] = Field(..., description="each as the body of POST /_admin/users")


class BulkAssignment(BaseModel):
    model_config = ConfigDict(frozen=True)
    user_ids: list[str] = Field(..., description="each assigned as POST /_admin/apps/{app_id}/users does")


def build_bulk_router(sim: Simulator) -> APIRouter:
    r = APIRouter()

    @r.post("/users/bulk")
    async def create_users(body: BulkUsers):
        """`{"users": [{"profile": {...}, "status": "ACTIVE"}, ...]}` -> `{"ids": [...]}` in the same order."""
        created = users.create_users(sim, [(u.profile, u.status) for u in body.users])
        return {"ids": [u.id for u in created]}

    @r.post("/apps/{app_id}/users/bulk")
    async def assign_users(app_id: str, body: BulkAssignment):
        """`{"user_ids": [...]}` -> `{"assigned": n}`, n the assignments made (one already there is kept)."""
        return {"assigned": apps.assign_users(sim, app_id, body.user_ids)}

    return r
