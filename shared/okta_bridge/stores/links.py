"""Okta user <-> target account links, with the last applied plan version (the stale-plan guard): the owner of
``links``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from okta_bridge.contracts import ScimOperationPlanned
from okta_bridge.mongo import key


@dataclass(frozen=True)
class Link:
    """Okta user <-> target account, and the newest plan version applied for the key."""

    target_id: str | None
    applied_version: int
    active: bool | None


class MongoLinks:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org

    async def get(self, app_id: str, user_id: str) -> Link | None:
        doc = await self._db.links.find_one({"_id": key(self._org, app_id, user_id)})
        if doc is None:
            return None
        return Link(doc.get("target_id"), int(doc.get("applied_version", 0)), doc.get("active"))

    async def save(self, plan: ScimOperationPlanned, target_id: str | None, active: bool | None) -> bool:
        """Conditional on the version: a concurrent newer write wins, the older one reports stale."""
        _id = key(plan.org, plan.app_id, plan.okta_user_id)
        fields = {"org": plan.org, "app_id": plan.app_id, "okta_user_id": plan.okta_user_id,
                  "applied_version": plan.version, "updated_at": datetime.now(UTC)}
        if target_id is not None:
            fields["target_id"] = target_id
        if active is not None:
            fields["active"] = active
        try:
            result = await self._db.links.update_one(
                {"_id": _id, "applied_version": {"$lt": plan.version}}, {"$set": fields}, upsert=True)
        except DuplicateKeyError:
            return False
        return result.acknowledged

    async def get_many(self, app_id: str, user_ids: list[str]) -> dict[str, Link]:
        """Links of many users in one query on ``_id`` (the primary index on any MongoDB)."""
        out: dict[str, Link] = {}
        for start in range(0, len(user_ids), 200):  # bounded queries, whatever the group's size
            ids = [key(self._org, app_id, u) for u in user_ids[start:start + 200]]
            async for d in self._db.links.find({"_id": {"$in": ids}},
                                               {"okta_user_id": 1, "target_id": 1, "applied_version": 1, "active": 1}):
                out[d["okta_user_id"]] = Link(d.get("target_id"), int(d.get("applied_version", 0)), d.get("active"))
        return out

    async def targets_of_app(self, app_id: str) -> dict[str, str]:
        """Okta user id -> linked target id, for every linked account of the app (the drift check)."""
        docs = self._db.links.find({"org": self._org, "app_id": app_id, "target_id": {"$ne": None}},
                                   {"okta_user_id": 1, "target_id": 1}, batch_size=10_000)
        return {d["okta_user_id"]: d["target_id"] async for d in docs}
