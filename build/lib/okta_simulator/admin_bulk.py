"""`/_admin` in bulk, for large orgs (10,000 users in seconds): each item is done exactly as its single
endpoint does it, with the same System Log events; nothing is done unless every item is valid.

Paced profile updates (`/users/profile-updates/paced`) are the benchmark's offered load: the simulator makes them
itself at a steady rate, as people editing profiles in Okta would, so that offering them costs the machine no HTTP
request each (a client posting 100 a second was the bound on a 2-core machine, not the bridge)."""
from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from . import apps_actions as apps
from . import users_actions as users
from .errors import OktaError
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


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    profile: dict


class PacedUpdates(BaseModel):
    model_config = ConfigDict(frozen=True)
    updates: list[ProfileUpdate] = Field(..., description="each as the body of POST /_admin/users/{id}/profile")
    rate_per_s: float = Field(..., gt=0, le=10_000, description="updates made per second, one at a time")


class _Pacer:
    """The paced updates under way (one run at a time): how many are done and when the last one was made."""

    def __init__(self) -> None:
        self.task: asyncio.Task | None = None
        self.total = self.done = 0
        self.started_at = self.finished_at = None

    def status(self) -> dict:
        return {"total": self.total, "done": self.done, "started_at": self.started_at,
                "finished_at": self.finished_at, "running": bool(self.task and not self.task.done())}


def build_bulk_router(sim: Simulator) -> APIRouter:
    r = APIRouter()
    pacer = _Pacer()

    @r.post("/users/bulk")
    async def create_users(body: BulkUsers):
        """`{"users": [{"profile": {...}, "status": "ACTIVE"}, ...]}` -> `{"ids": [...]}` in the same order."""
        created = users.create_users(sim, [(u.profile, u.status) for u in body.users])
        return {"ids": [u.id for u in created]}

    @r.post("/apps/{app_id}/users/bulk")
    async def assign_users(app_id: str, body: BulkAssignment):
        """`{"user_ids": [...]}` -> `{"assigned": n}`, n the assignments made (one already there is kept)."""
        return {"assigned": apps.assign_users(sim, app_id, body.user_ids)}

    @r.post("/users/profile-updates/paced", status_code=202)
    async def paced_updates(body: PacedUpdates):
        """`{"updates": [{"id", "profile"}, ...], "rate_per_s": 100}`: update i is made at start + i / rate (each
        as `POST /_admin/users/{id}/profile`, with its `user.account.update_profile` event) -> `{"scheduled": n,
        "started_at": epoch s}`. Every id must exist (404 naming the first that does not, nothing scheduled); 409
        while an earlier run is under way."""
        if pacer.task is not None and not pacer.task.done():
            raise OktaError(409, "E0000001", "Api validation failed: paced updates",
                            ["paced updates are already under way"])
        for update in body.updates:
            users.get_user(sim, update.id)
        loop = asyncio.get_running_loop()
        start, interval = loop.time(), 1.0 / body.rate_per_s
        pacer.total, pacer.done, pacer.started_at, pacer.finished_at = len(body.updates), 0, time.time(), None

        async def run() -> None:
            for i, update in enumerate(body.updates):
                delay = start + i * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    users.update_profile(sim, update.id, update.profile)
                except OktaError:  # deleted meanwhile: skipped, as a person's edit of a gone user would be
                    pass
                pacer.done += 1
            pacer.finished_at = time.time()

        pacer.task = loop.create_task(run())
        return {"scheduled": pacer.total, "started_at": pacer.started_at}

    @r.get("/users/profile-updates/paced")
    async def paced_status():
        """`{"total", "done", "started_at", "finished_at", "running"}` of the last paced run."""
        return pacer.status()

    return r
