"""Okta user <-> target account links, with the last applied plan version (the stale-plan guard).

A link document also carries its key's lease (``owner``, ``expires``, ``token``; :mod:`okta_bridge.leases`): the
dispatcher takes the lease on the link itself, so taking it returns the link, and the version-checked save frees it
in the same write. A document whose lease was taken before any plan was applied has no ``applied_version``: it is
no link yet.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from okta_bridge.contracts import ScimOperationPlanned
from okta_bridge.leases import release_fields
from okta_bridge.mongo import key
from scim_dispatcher.ports import Link


def link_key(org: str, app_id: str, user_id: str) -> str:
    """The link document's ``_id``, which is also the key of its lease."""
    return key(org, app_id, user_id)


def link_from_doc(doc: dict | None) -> Link | None:
    if doc is None or "applied_version" not in doc:
        return None
    return Link(doc.get("target_id"), int(doc["applied_version"]), doc.get("active"))


class MongoLinks:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org

    async def get(self, app_id: str, user_id: str) -> Link | None:
        return link_from_doc(await self._db.links.find_one({"_id": link_key(self._org, app_id, user_id)}))

    async def save(self, plan: ScimOperationPlanned, target_id: str | None, active: bool | None,
                   release_owner: str | None = None) -> bool:
        """Conditional on the version: a concurrent newer write wins, the older one reports stale.

        ``release_owner``: the caller holds the key's lease on this document; the save frees it in the same write,
        and only while it is still that owner's (a holder that lost its lease writes nothing)."""
        _id = link_key(plan.org, plan.app_id, plan.okta_user_id)
        fields = {"org": plan.org, "app_id": plan.app_id, "okta_user_id": plan.okta_user_id,
                  "applied_version": plan.version, "updated_at": datetime.now(UTC)}
        if target_id is not None:
            fields["target_id"] = target_id
        if active is not None:
            fields["active"] = active
        if release_owner is not None:  # the document exists: the lease was taken on it
            newer = {"$or": [{"applied_version": {"$lt": plan.version}}, {"applied_version": {"$exists": False}}]}
            result = await self._db.links.update_one({"_id": _id, "owner": release_owner, **newer},
                                                     {"$set": {**fields, **release_fields()}})
            return result.matched_count == 1
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
            async for d in self._db.links.find({"_id": {"$in": ids}, "applied_version": {"$exists": True}},
                                               {"okta_user_id": 1, "target_id": 1, "applied_version": 1, "active": 1}):
                out[d["okta_user_id"]] = link_from_doc(d)  # type: ignore[assignment]
        return out
