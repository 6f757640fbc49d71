"""Who owns which partition of a dispatcher pool: the owner of ``partitions``.

One document per (org, pool): the partition count, the live members (dispatcher replicas, each with the expiry of
its registration) and one lease per partition (owner, expiry, fencing token). Times are the database server's
(``$$NOW``): hosts' clocks never matter. Every change is a compare-and-set on ``rev``, so two replicas never both
take a partition; the fencing token of a partition grows each time its owner changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pymongo import ReadPreference
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from okta_bridge.mongo import key

__all__ = ["Lease", "MongoPartitions", "PartitionCountChanged", "PoolState"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PartitionCountChanged(RuntimeError):
    """The connectors file gives a pool another partition count than the one its state was made with."""


@dataclass(frozen=True)
class Lease:
    owner: str | None
    expires: datetime
    token: int


@dataclass
class PoolState:
    pool: str
    count: int
    rev: int
    now: datetime  # the database's clock when this was read
    members: dict[str, datetime] = field(default_factory=dict)  # replica -> its registration's expiry
    leases: list[Lease] = field(default_factory=list)


class MongoPartitions:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._coll = db.partitions.with_options(read_preference=ReadPreference.PRIMARY)
        self._org = org

    def _id(self, pool: str) -> str:
        return key(self._org, pool)

    async def claim_count(self, pool: str, count: int) -> None:
        """The first service to start records the pool's count; a later start with another count is refused."""
        try:
            await self._coll.update_one({"_id": self._id(pool)}, {"$setOnInsert": {
                "count": count, "rev": 0, "members": {},
                "leases": [{"owner": None, "expires": EPOCH, "token": 0} for _ in range(count)]}}, upsert=True)
        except DuplicateKeyError:  # another service created it at the same moment
            pass
        doc = await self._coll.find_one({"_id": self._id(pool)}, {"count": 1})
        if doc is None or int(doc["count"]) != count:
            stored = doc and doc["count"]
            raise PartitionCountChanged(
                f"pool {pool!r} has {stored} partitions, but the connectors file says {count}: a key could be "
                f"routed to two partitions and get two writers. Keep pools.{pool}.partitions at {stored}, or stop the "
                f"bridge, let the pool's queues drain and run `bridgectl partitions reset --pool "
                f"{pool} --count {count} --yes` (docs/architecture.md, Partitions)")

    async def read(self, pool: str) -> PoolState:
        cursor = await self._coll.aggregate([{"$match": {"_id": self._id(pool)}}, {"$addFields": {"_now": "$$NOW"}}])
        docs = await cursor.to_list(1)
        if not docs:
            raise LookupError(f"pool {pool!r} has no partition state: claim_count first")
        doc = docs[0]
        return PoolState(pool, int(doc["count"]), int(doc["rev"]), _utc(doc["_now"]),
                         {m: _utc(e) for m, e in (doc.get("members") or {}).items()},
                         [Lease(x.get("owner"), _utc(x["expires"]), int(x.get("token", 0))) for x in doc["leases"]])

    async def write(self, state: PoolState) -> bool:
        """Compare-and-set: False when another replica wrote since ``state`` was read."""
        result = await self._coll.update_one(
            {"_id": self._id(state.pool), "rev": state.rev},
            {"$set": {"members": dict(state.members),
                      "leases": [{"owner": x.owner, "expires": x.expires, "token": x.token} for x in state.leases]},
             "$inc": {"rev": 1}})
        return result.modified_count == 1

    async def reset(self, pool: str, count: int) -> None:
        """Operator command: a new count, every lease free, tokens kept growing (refused while a member lives)."""
        state = await self.read(pool)
        alive = [m for m, expires in state.members.items() if expires > state.now]
        held = [i for i, x in enumerate(state.leases) if x.owner and x.expires > state.now]
        if alive or held:
            raise RuntimeError(f"pool {pool!r} still has live dispatchers ({', '.join(alive) or 'leases held'}): "
                               "stop them first")
        top = max((x.token for x in state.leases), default=0)
        result = await self._coll.update_one({"_id": self._id(pool), "rev": state.rev}, {
            "$set": {"count": count, "members": {},
                     "leases": [{"owner": None, "expires": EPOCH, "token": top} for _ in range(count)]},
            "$inc": {"rev": 1}})
        if result.modified_count != 1:
            raise RuntimeError(f"pool {pool!r} changed while resetting: try again")


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at
