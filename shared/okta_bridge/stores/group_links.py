"""Okta group <-> target group links of pushed groups, with the last applied group-plan version: the owner of
``group_links``. Every write of the dispatcher is fenced by its partition's token (``fence``), as user links are: a
write whose token is older than the last one that wrote the group does not land (an owner that lost its partition
cannot overwrite its successor's link)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from okta_bridge.mongo import key


class FencedOut(RuntimeError):
    """A newer owner of the group's partition wrote it: this owner's write did not land (its plan is tried again,
    by the partition's owner)."""


def _fenced(fence: int) -> dict:
    return {"fence": {"$not": {"$gt": fence}}}


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

    async def save(self, app_id: str, group_id: str, target_id: str | None, display_name: str | None, version: int,
                   fence: int = 0) -> bool:
        """Conditional on the version and the fence, as user links are: False when a newer plan was applied
        meanwhile, or a newer owner of the partition wrote the link."""
        fields = {"org": self._org, "app_id": app_id, "group_id": group_id, "target_id": target_id,
                  "applied_version": version, "fence": fence, "updated_at": datetime.now(UTC)}
        if target_id is not None:
            fields.update(last_target_id=target_id, display_name=display_name)
        try:
            await self._db.group_links.update_one(
                {"_id": key(self._org, app_id, group_id), "applied_version": {"$lt": version}, **_fenced(fence)},
                {"$set": fields}, upsert=True)
        except DuplicateKeyError:
            return False
        return True

    async def mark_creating(self, app_id: str, group_id: str, name: str, fence: int = 0) -> None:
        """Before a POST /Groups: a retry that finds a group of this name unlinked knows it is its own. Raises
        :class:`FencedOut` (nothing is created) when a newer owner of the partition wrote the group."""
        try:
            await self._db.group_links.update_one(
                {"_id": key(self._org, app_id, group_id), **_fenced(fence)},
                {"$set": {"creating": name, "fence": fence},
                 "$setOnInsert": {"org": self._org, "app_id": app_id, "group_id": group_id, "target_id": None,
                                  "applied_version": 0}}, upsert=True)
        except DuplicateKeyError:
            raise FencedOut("a newer owner of the group's partition wrote it; not created here") from None

    async def was_creating(self, app_id: str, group_id: str, name: str) -> bool:
        doc = await self._db.group_links.find_one({"_id": key(self._org, app_id, group_id)}, {"creating": 1})
        return bool(doc and doc.get("creating") == name)

    async def relink(self, app_id: str, group_id: str, target_id: str, fence: int = 0) -> None:
        """A recreated target group keeps the link's version (the caller owns the group's partition). Raises
        :class:`FencedOut` when a newer owner of the partition wrote the link."""
        done = await self._db.group_links.update_one(
            {"_id": key(self._org, app_id, group_id), **_fenced(fence)},
            {"$set": {"target_id": target_id, "last_target_id": target_id, "fence": fence,
                      "updated_at": datetime.now(UTC)}})
        if done.matched_count == 0 and await self._db.group_links.count_documents(
                {"_id": key(self._org, app_id, group_id)}, limit=1):
            raise FencedOut("a newer owner of the group's partition wrote its link; not relinked here")

    async def of_app(self, app_id: str) -> list[GroupLink]:
        docs = self._db.group_links.find({"org": self._org, "app_id": app_id, "target_id": {"$ne": None}})
        return [_link(d) async for d in docs]


def _link(doc: dict) -> GroupLink:
    return GroupLink(doc["group_id"], doc.get("target_id"), doc.get("display_name"), int(doc.get("applied_version", 0)),
                     doc.get("last_target_id"))
