"""Okta group <-> target group links of pushed groups, with the last applied group-plan version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from okta_bridge.mongo import key


@dataclass(frozen=True)
class GroupLink:
    group_id: str
    target_id: str | None  # None: unlinked (the version stays, so an older push cannot link it again)
    display_name: str | None
    applied_version: int
    last_target_id: str | None = None  # the target group it was linked to, kept after an unlink (delete command)


class MongoGroupLinks:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org

    async def ensure_indexes(self) -> None:
        await self._db.group_links.create_index([("org", ASCENDING), ("app_id", ASCENDING), ("target_id", ASCENDING)])

    async def get(self, app_id: str, group_id: str) -> GroupLink | None:
        doc = await self._db.group_links.find_one({"_id": key(self._org, app_id, group_id)})
        return _link(doc) if doc else None

    async def linked_to(self, app_id: str, target_id: str) -> GroupLink | None:
        """The Okta group a target group is linked to, if any (one target group serves one Okta group)."""
        if not target_id:
            return None
        doc = await self._db.group_links.find_one({"org": self._org, "app_id": app_id, "target_id": target_id})
        return _link(doc) if doc else None

    async def save(self, app_id: str, group_id: str, target_id: str | None, display_name: str | None, version: int) -> bool:
        """Conditional on the version, as user links are: False when a newer plan was applied meanwhile."""
        fields = {"org": self._org, "app_id": app_id, "group_id": group_id, "target_id": target_id,
                  "applied_version": version, "updated_at": datetime.now(UTC)}
        if target_id is not None:
            fields.update(last_target_id=target_id, display_name=display_name)
        try:
            await self._db.group_links.update_one(
                {"_id": key(self._org, app_id, group_id), "applied_version": {"$lt": version}}, {"$set": fields},
                upsert=True)
        except DuplicateKeyError:
            return False
        return True

    async def mark_creating(self, app_id: str, group_id: str, name: str) -> None:
        """Before a POST /Groups: a retry that finds a group of this name unlinked knows it is its own."""
        await self._db.group_links.update_one(
            {"_id": key(self._org, app_id, group_id)},
            {"$set": {"creating": name}, "$setOnInsert": {"org": self._org, "app_id": app_id, "group_id": group_id,
                                                         "target_id": None, "applied_version": 0}}, upsert=True)

    async def was_creating(self, app_id: str, group_id: str, name: str) -> bool:
        doc = await self._db.group_links.find_one({"_id": key(self._org, app_id, group_id)}, {"creating": 1})
        return bool(doc and doc.get("creating") == name)

    async def relink(self, app_id: str, group_id: str, target_id: str) -> None:
        """A recreated target group keeps the link's version (the caller holds the group's lease)."""
        await self._db.group_links.update_one({"_id": key(self._org, app_id, group_id)},
                                              {"$set": {"target_id": target_id, "last_target_id": target_id,
                                                        "updated_at": datetime.now(UTC)}})

    async def of_app(self, app_id: str) -> list[GroupLink]:
        docs = self._db.group_links.find({"org": self._org, "app_id": app_id, "target_id": {"$ne": None}})
        return [_link(d) async for d in docs]


def _link(doc: dict) -> GroupLink:
    return GroupLink(doc["group_id"], doc.get("target_id"), doc.get("display_name"), int(doc.get("applied_version", 0)),
                     doc.get("last_target_id"))
