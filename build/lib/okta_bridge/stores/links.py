"""Okta user <-> target account links, with the last applied plan version (the stale-plan guard): the owner of
``links``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from okta_bridge.contracts import ScimOperationPlanned
from okta_bridge.mongo import key

__all__ = ["Link", "LinkWrite", "LinkWriteError", "MongoLinks"]


@dataclass(frozen=True)
class Link:
    """Okta user <-> target account, and the newest plan version applied for the key. ``user_name``: the account's
    userName on the target as last written or read, sent as a group member's ``display`` as Okta does (None for a
    link stored before it was kept)."""

    target_id: str | None
    applied_version: int
    active: bool | None
    user_name: str | None = field(default=None, compare=False, repr=False)  # a person's data: never in a repr


@dataclass(frozen=True)
class LinkWrite:
    """A link to store once a plan was applied: conditional on the version, fenced by the partition's token."""
    app_id: str
    user_id: str
    version: int
    target_id: str | None  # None: keep the stored one
    active: bool | None  # None: keep the stored one
    fence: int = 0  # the partition's fencing token (0: no partition, a single process)
    user_name: str | None = field(default=None, repr=False)  # None: keep the stored one (never in a repr)


class MongoLinks:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org

    async def ensure_indexes(self) -> None:
        """(org, app, target id): who holds an account, asked before an existing account is adopted."""
        await self._db.links.create_index([("org", 1), ("app_id", 1), ("target_id", 1)])

    async def holder_of(self, app_id: str, target_id: str, other_than: str) -> str | None:
        """The Okta user, other than ``other_than``, whose link in this app holds ``target_id`` (adoption guard)."""
        doc = await self._db.links.find_one({"org": self._org, "app_id": app_id, "target_id": target_id,
                                             "okta_user_id": {"$ne": other_than}}, {"okta_user_id": 1})
        return doc["okta_user_id"] if doc else None

    async def get(self, app_id: str, user_id: str) -> Link | None:
        return (await self.get_keys([(app_id, user_id)])).get((app_id, user_id))

    async def get_keys(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Link]:
        """Links of many (app, user) keys, a few hundred a query on ``_id`` (the primary index on any MongoDB)."""
        out: dict[tuple[str, str], Link] = {}
        for start in range(0, len(keys), IN_CHUNK):
            ids = [key(self._org, a, u) for a, u in keys[start:start + IN_CHUNK]]
            async for d in self._db.links.find({"_id": {"$in": ids}}, _FIELDS, batch_size=IN_CHUNK + 1):
                out[(d["app_id"], d["okta_user_id"])] = _link(d)
        return out

    async def save_many(self, writes: list[LinkWrite]) -> list[bool]:
        """One unordered bulk write; per write, whether it landed. A write lands only when its version is newer than
        the stored one and its fencing token is not older than the last one that wrote the key (an owner that lost
        its partition cannot overwrite its successor's link). One write that fails for another reason does not stop
        the others: its error is raised after they committed, with the indexes that failed."""
        if not writes:
            return []
        ops = [UpdateOne({"_id": key(self._org, w.app_id, w.user_id), "applied_version": {"$lt": w.version},
                          "fence": {"$not": {"$gt": w.fence}}}, {"$set": _fields(self._org, w)}, upsert=True)
               for w in writes]
        landed = [True] * len(writes)
        try:
            await self._db.links.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            others = []
            for error in exc.details.get("writeErrors", []):
                landed[error["index"]] = False
                if error.get("code") != 11000:  # 11000: the filter matched nothing (stale or fenced)
                    others.append(error["index"])
            if others:
                raise LinkWriteError(others, landed) from exc
        return landed

    async def save(self, plan: ScimOperationPlanned, target_id: str | None, active: bool | None) -> bool:
        """Conditional on the version: a concurrent newer write wins, the older one reports stale."""
        return (await self.save_many([LinkWrite(plan.app_id, plan.okta_user_id, plan.version, target_id,
                                                active)]))[0]

    async def get_many(self, app_id: str, user_ids: list[str]) -> dict[str, Link]:
        """Links of many users of one app."""
        found = await self.get_keys([(app_id, u) for u in user_ids])
        return {u: link for (_, u), link in found.items()}

    async def targets_of_app(self, app_id: str) -> dict[str, str]:
        """Okta user id -> linked target id, for every linked account of the app (the drift check)."""
        docs = self._db.links.find({"org": self._org, "app_id": app_id, "target_id": {"$ne": None}},
                                   {"okta_user_id": 1, "target_id": 1}, batch_size=10_000)
        return {d["okta_user_id"]: d["target_id"] async for d in docs}


class LinkWriteError(RuntimeError):
    """Some link writes of a bulk failed for another reason than staleness; ``landed`` tells which others did."""

    def __init__(self, failed: list[int], landed: list[bool]) -> None:
        super().__init__(f"{len(failed)} link write(s) failed")
        self.failed, self.landed = failed, landed


IN_CHUNK = 200
_FIELDS = {"app_id": 1, "okta_user_id": 1, "target_id": 1, "applied_version": 1, "active": 1, "user_name": 1}


def _link(doc: dict) -> Link:
    return Link(doc.get("target_id"), int(doc.get("applied_version", 0)), doc.get("active"), doc.get("user_name"))


def _fields(org: str, w: LinkWrite) -> dict:
    fields = {"org": org, "app_id": w.app_id, "okta_user_id": w.user_id, "applied_version": w.version,
              "fence": w.fence, "updated_at": datetime.now(UTC)}
    if w.target_id is not None:
        fields["target_id"] = w.target_id
    if w.active is not None:
        fields["active"] = w.active
    if w.user_name is not None:
        fields["user_name"] = w.user_name
    return fields
