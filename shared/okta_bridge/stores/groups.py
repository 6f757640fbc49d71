"""The state of pushed groups in MongoDB, shared by the translator (which writes what Okta wants) and the
scim-dispatcher (which writes what it applied).

``pushed_groups``  one document per (org, app, group): name, whether it is pushed, how it was named in the
                   connectors file, and the group plans' version counter.
``group_members``  one document per (org, app, group, member): ``member`` (what Okta holds), ``version`` (the Okta
                   time of the fact, in microseconds: an event's ``published``, or a listing's time) and
                   ``applied_version`` (the version the dispatcher last brought the target in line with).

Membership versions are Okta timestamps rather than counters, so that events which reach the translator out of
order (the System Log orders by persistence time, and events are published concurrently) still resolve to the
latest fact: a write only lands when its version is newer than the stored one. A listing is stamped one second
before Okta's clock said when it answered, so a change made while it was read always wins over it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from okta_bridge.mongo import key

__all__ = ["GroupState", "micros"]


def micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


class GroupState:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org

    async def ensure_indexes(self) -> None:
        await self._db.pushed_groups.create_index([("org", ASCENDING), ("group_id", ASCENDING)])
        await self._db.pushed_groups.create_index([("org", ASCENDING), ("app_id", ASCENDING)])
        await self._db.group_members.create_index([("org", ASCENDING), ("app_id", ASCENDING), ("group_id", ASCENDING)])
        await self._db.group_members.create_index([("org", ASCENDING), ("app_id", ASCENDING), ("user_id", ASCENDING)])

    # --- pushed groups ---------------------------------------------------------------------------------------------
    async def pushed_of_app(self, app_id: str) -> list[dict[str, Any]]:
        return await self._db.pushed_groups.find({"org": self._org, "app_id": app_id, "pushed": True}).to_list(None)

    async def apps_pushing(self, group_id: str) -> list[dict[str, Any]]:
        return await self._db.pushed_groups.find({"org": self._org, "group_id": group_id, "pushed": True}).to_list(None)

    async def pushed_group_ids(self) -> set[str]:
        docs = self._db.pushed_groups.find({"org": self._org, "pushed": True}, {"group_id": 1})
        return {d["group_id"] async for d in docs}

    async def is_pushed(self, app_id: str, group_id: str) -> bool:
        doc = await self._db.pushed_groups.find_one({"_id": key(self._org, app_id, group_id)}, {"pushed": 1})
        return bool(doc and doc.get("pushed"))

    async def set_pushed(self, app_id: str, group_id: str, *, pushed: bool, name: str | None = None,
                         entry: str | None = None, why: str | None = None) -> None:
        fields: dict[str, Any] = {"org": self._org, "app_id": app_id, "group_id": group_id, "pushed": pushed}
        for field, value in (("name", name), ("entry", entry), ("why", why)):
            if value is not None:
                fields[field] = value
        await self._db.pushed_groups.update_one({"_id": key(self._org, app_id, group_id)}, {"$set": fields},
                                                upsert=True)

    async def next_group_version(self, app_id: str, group_id: str) -> int:
        for _ in range(3):  # two first takes at once: one inserts, the other finds no document, or a duplicate key
            try:
                doc = await self._db.pushed_groups.find_one_and_update(
                    {"_id": key(self._org, app_id, group_id)},
                    {"$inc": {"version": 1}, "$setOnInsert": {"org": self._org, "app_id": app_id,
                                                              "group_id": group_id, "pushed": False}},
                    upsert=True, return_document=ReturnDocument.AFTER)
            except DuplicateKeyError:
                continue
            if doc is not None:
                return int(doc["version"])
        raise RuntimeError(f"no group version taken for {group_id} after 3 attempts")

    # --- members ---------------------------------------------------------------------------------------------------
    async def want(self, app_id: str, group_id: str, facts: Iterable[tuple[str, bool]], version: int,
                   listing: str | None = None) -> list[str]:
        """Records what Okta holds for each (user, member?) at ``version``; returns the users whose stored fact
        changed (older facts lose to newer ones and are dropped)."""
        facts = list(facts)
        if not facts:
            return []
        writes: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (filter, fields)
        for user_id, member in facts:
            fields: dict[str, Any] = {"org": self._org, "app_id": app_id, "group_id": group_id, "user_id": user_id,
                                      "member": member, "version": version}
            if listing:
                fields["listing"] = listing
            writes.append(({"_id": key(self._org, app_id, group_id, user_id), "version": {"$lt": version}}, fields))
        ops = [UpdateOne(f, {"$set": fields, "$setOnInsert": {"applied_version": 0}}, upsert=True)
               for f, fields in writes]
        stale: set[int] = set()
        try:
            await self._db.group_members.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if others:
                raise
            collided = [e["index"] for e in exc.details.get("writeErrors", [])]
            # a duplicate key means the fact exists with a version not older than ours, or another writer inserted
            # it at the same moment; MongoDB does not retry such an upsert, so try once more as a plain update
            for i in collided:
                retry = await self._db.group_members.update_one(writes[i][0], {"$set": writes[i][1]})
                if retry.matched_count == 0:
                    stale.add(i)
        return [user_id for i, (user_id, _) in enumerate(facts) if i not in stale]

    async def left_since_listing(self, app_id: str, group_id: str, listing: str, version: int) -> int:
        """Members stored as in the group whom a complete listing did not show have left it."""
        result = await self._db.group_members.update_many(
            {"org": self._org, "app_id": app_id, "group_id": group_id, "member": True,
             "listing": {"$ne": listing}, "version": {"$lt": version}},
            {"$set": {"member": False, "version": version, "listing": listing}})
        return result.modified_count

    async def members(self, app_id: str, group_id: str, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = [key(self._org, app_id, group_id, u) for u in user_ids]
        docs = self._db.group_members.find({"_id": {"$in": ids}})
        return {d["user_id"]: d async for d in docs}

    async def all_members(self, app_id: str, group_id: str) -> dict[str, dict[str, Any]]:
        docs = self._db.group_members.find({"org": self._org, "app_id": app_id, "group_id": group_id})
        return {d["user_id"]: d async for d in docs}

    async def mark_applied(self, app_id: str, group_id: str, applied: Iterable[tuple[str, int]],
                           error: str | None = None, fence: int = 0) -> None:
        """The dispatcher applied these members' facts: each marked only if newer than what was applied, and not
        fenced off (``fence``: the partition's token; a newer owner's write stands)."""
        ops = [UpdateOne({"_id": key(self._org, app_id, group_id, user_id), "applied_version": {"$lt": version},
                          "applied_fence": {"$not": {"$gt": fence}}},
                         {"$set": {"applied_version": version, "error": error, "applied_fence": fence}})
               for user_id, version in applied]
        if ops:
            await self._db.group_members.bulk_write(ops, ordered=False)

    async def mark_refused(self, app_id: str, group_id: str, user_ids: Iterable[str], error: str,
                           fence: int = 0) -> None:
        """The target refused these members: noted, not applied (a replay or the next push tries again)."""
        ids = [key(self._org, app_id, group_id, u) for u in user_ids]
        if ids:
            await self._db.group_members.update_many({"_id": {"$in": ids}, "applied_fence": {"$not": {"$gt": fence}}},
                                                     {"$set": {"error": error, "applied_fence": fence}})

    async def pending_for_user(self, app_id: str, user_id: str) -> list[str]:
        """Groups that want this user as a member and have not had it applied (it was not provisioned then)."""
        docs = self._db.group_members.find({"org": self._org, "app_id": app_id, "user_id": user_id, "member": True},
                                           {"group_id": 1, "version": 1, "applied_version": 1})
        return [d["group_id"] async for d in docs if d.get("applied_version", 0) < d["version"]]

    async def forget_group(self, app_id: str, group_id: str) -> None:
        await self._db.group_members.delete_many({"org": self._org, "app_id": app_id, "group_id": group_id})

