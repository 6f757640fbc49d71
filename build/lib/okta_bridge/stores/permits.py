"""Permits shared by every replica of every service: the owner of ``permits``.

One document per scope (a dispatcher pool's apps, or the Okta org's concurrent requests): each resource's limit, and
per holder (a process) its registration's expiry, the permits it holds and the permits it wants. Times are the
database server's (``$$NOW``). Every change is a compare-and-set on ``rev``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pymongo import ReadPreference
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from okta_bridge.mongo import key

__all__ = ["Holding", "Ledger", "MongoPermits"]


@dataclass
class Holding:
    expires: datetime
    held: dict[str, int] = field(default_factory=dict)
    want: dict[str, int] = field(default_factory=dict)


@dataclass
class Ledger:
    scope: str
    rev: int
    now: datetime
    holders: dict[str, Holding] = field(default_factory=dict)


class MongoPermits:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._coll = db.permits.with_options(read_preference=ReadPreference.PRIMARY)
        self._org = org

    def _id(self, scope: str) -> str:
        return key(self._org, scope)

    async def read(self, scope: str) -> Ledger:
        doc = await self._read(scope)
        if doc is None:  # the first holder of this scope creates it
            try:
                await self._coll.insert_one({"_id": self._id(scope), "rev": 0, "holders": {}})
            except DuplicateKeyError:  # created by another holder at the same moment
                pass
            doc = await self._read(scope)
        holders = {name: Holding(_utc(h["expires"]), dict(h.get("held") or {}), dict(h.get("want") or {}))
                   for name, h in (doc.get("holders") or {}).items()}
        return Ledger(scope, int(doc["rev"]), _utc(doc["_now"]), holders)

    async def _read(self, scope: str) -> dict | None:
        cursor = await self._coll.aggregate([{"$match": {"_id": self._id(scope)}}, {"$addFields": {"_now": "$$NOW"}}])
        docs = await cursor.to_list(1)
        return docs[0] if docs else None

    async def write(self, ledger: Ledger) -> bool:
        """Compare-and-set: False when another holder wrote since ``ledger`` was read."""
        holders = {name: {"expires": h.expires, "held": h.held, "want": h.want} for name, h in ledger.holders.items()}
        result = await self._coll.update_one({"_id": self._id(ledger.scope), "rev": ledger.rev},
                                             {"$set": {"holders": holders}, "$inc": {"rev": 1}})
        return result.modified_count == 1


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at
