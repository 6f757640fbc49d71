"""The accidental-deactivation guard's state in MongoDB: the owner of ``guards`` and ``guard_held``.

* ``guards``: one document per (org, app): the current window's start, the deactivating plans counted in it, and
  whether the app is paused (its deactivations are held). Every translator replica counts in the same document with
  one atomic ``findAndModify`` per app per batch (after a create-if-missing; not per change), so the count is shared and nothing lives in a
  process's memory.
* ``guard_held``: one document per held (org, app, user): the plan version that was held and why, never a person's
  data. An operator releases them (``released: true``: the next deactivating plan of that key goes out without being
  counted again, and the translator then forgets the document) or discards them (deleted). A paused app stays
  paused until nothing of it is held any more; then its window starts again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Awaitable, Callable

from pymongo import ASCENDING, DeleteOne, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from okta_bridge.mongo import key

__all__ = ["GuardState", "Held", "MongoGuards", "Take", "decide", "limit_of"]

IN_CHUNK = 200
# a released key's deactivation goes out uncounted within this time (its look-again is planned within seconds); a
# release whose key was planned otherwise (assigned again: an update) is forgotten after it
RELEASE_HONOURED = timedelta(hours=1)


@dataclass(frozen=True)
class Take:
    """What one batch may send of an app's deactivations."""
    allowed: int  # the first ``allowed`` of the batch's deactivations go out; the rest are held
    paused: bool  # the app is paused (now, or was already)
    count: int  # deactivating plans counted in the window, this batch's included
    limit: int  # the window's threshold


def limit_of(max_deactivations: int | str, assigned: int) -> int:
    """A window's threshold: a number, or a share (``"10%"``) of ``assigned`` (at least 1)."""
    if isinstance(max_deactivations, str):
        return max(1, int(float(max_deactivations[:-1]) / 100 * assigned))
    return max_deactivations


def decide(before: int, n: int, limit: int, paused: bool) -> Take:
    """``n`` more deactivations in a window that counted ``before``: the first ones up to the threshold go out;
    past it (or while paused) the rest are held and the app is paused."""
    if paused:
        return Take(0, True, before + n, limit)
    allowed = max(0, min(n, limit - before))
    return Take(allowed, allowed < n, before + n, limit)


@dataclass(frozen=True)
class Held:
    app_id: str
    user_id: str
    version: int | None
    cause: str
    event_uuid: str | None = None
    held_at: datetime | None = None


@dataclass(frozen=True)
class GuardState:
    app_id: str
    paused: bool
    count: int
    window_start: datetime | None
    paused_at: datetime | None
    held: int  # held keys not yet released


class MongoGuards:
    def __init__(self, db: AsyncDatabase, org: str,
                 count_assigned: Callable[[str], Awaitable[int]] | None = None) -> None:
        """``count_assigned(app_id)``: the app's assigned users (the assignments store's), for a share threshold."""
        self._db, self._org, self._count_assigned = db, org, count_assigned

    async def ensure_indexes(self) -> None:
        await self._db.guard_held.create_index([("org", ASCENDING), ("app_id", ASCENDING), ("released", ASCENDING)])

    # --- the translator ----------------------------------------------------------------------------------------------
    async def take(self, app_id: str, n: int, max_deactivations: int | str, window_s: int,
                   now: datetime | None = None) -> Take:
        """Counts ``n`` deactivating plans of the app in its window (a new window when the last one is over) and says
        how many of them may go out. A share (``"10%"``) is of the app's assigned users plus those deactivated in the
        window, these included (a plan is committed, and a full sync marks the missing unassigned, before this)."""
        now = now or datetime.now(UTC)
        expired = {"$or": [{"$eq": [{"$ifNull": ["$window_start", None]}, None]},
                           {"$lt": ["$window_start", now - timedelta(seconds=window_s)]}]}
        fresh = {"$and": [expired, {"$ne": [{"$ifNull": ["$paused", False]}, True]}]}  # a paused window stays
        update = [{"$set": {"org": {"$literal": self._org}, "app_id": {"$literal": app_id},
                            "window_start": {"$cond": [fresh, now, "$window_start"]},
                            "count": {"$cond": [fresh, n, {"$add": [{"$ifNull": ["$count", 0]}, n]}]},
                            "paused": {"$ifNull": ["$paused", False]}}}]
        _id = key(self._org, app_id)
        try:  # the document first (a no-op once it exists), then one atomic update of the existing document
            await self._db.guards.update_one({"_id": _id}, {"$setOnInsert": {"org": self._org, "app_id": app_id,
                                                                             "count": 0, "paused": False}},
                                             upsert=True)
        except DuplicateKeyError:
            pass  # another replica created it at the same moment
        doc = await self._db.guards.find_one_and_update({"_id": _id}, update, return_document=ReturnDocument.AFTER)
        if doc is None:
            raise RuntimeError(f"the guard of app {app_id} could not be counted; tried again")
        count = int(doc.get("count") or n)
        before = count - n
        assigned = 0
        if isinstance(max_deactivations, str) and self._count_assigned is not None:
            assigned = await self._count_assigned(app_id)
        take = decide(before, n, limit_of(max_deactivations, assigned + before + n), bool(doc.get("paused")))
        if take.paused and not doc.get("paused"):  # past the threshold: paused until an operator acts
            await self._db.guards.update_one({"_id": key(self._org, app_id)},
                                             {"$set": {"paused": True, "paused_at": now}})
        return take

    async def hold(self, held: list[Held]) -> None:
        if not held:
            return
        now = datetime.now(UTC)
        await self._db.guard_held.bulk_write([
            UpdateOne({"_id": key(self._org, h.app_id, h.user_id)},
                      {"$set": {"org": self._org, "app_id": h.app_id, "user_id": h.user_id, "version": h.version,
                                "cause": h.cause, "event_uuid": h.event_uuid, "held_at": now, "released": False}},
                      upsert=True) for h in held], ordered=False)

    async def released(self, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Of these keys, those an operator released (their deactivation goes out, uncounted)."""
        ids = [key(self._org, a, u) for a, u in keys]
        out: set[tuple[str, str]] = set()
        for start in range(0, len(ids), IN_CHUNK):
            async for d in self._db.guard_held.find({"_id": {"$in": ids[start:start + IN_CHUNK]}, "released": True,
                                                    "released_at": {"$gte": datetime.now(UTC) - RELEASE_HONOURED}},
                                                   {"app_id": 1, "user_id": 1}):
                out.add((d["app_id"], d["user_id"]))
        return out

    async def forget(self, keys: set[tuple[str, str]]) -> None:
        if keys:
            await self._db.guard_held.bulk_write([DeleteOne({"_id": key(self._org, a, u), "released": True})
                                                  for a, u in sorted(keys)], ordered=False)

    # --- operators ---------------------------------------------------------------------------------------------------
    async def states(self) -> list[GuardState]:
        held: dict[str, int] = {}
        async for d in self._db.guard_held.find({"org": self._org, "released": False}, {"app_id": 1}):
            held[d["app_id"]] = held.get(d["app_id"], 0) + 1
        out = []
        async for d in self._db.guards.find({"org": self._org}):
            out.append(GuardState(d["app_id"], bool(d.get("paused")), int(d.get("count") or 0), d.get("window_start"),
                                  d.get("paused_at"), held.pop(d["app_id"], 0)))
        out += [GuardState(a, False, 0, None, None, n) for a, n in held.items()]
        return sorted(out, key=lambda g: g.app_id)

    async def held(self, app_id: str, users: list[str] | None = None) -> list[Held]:
        query: dict[str, Any] = {"org": self._org, "app_id": app_id, "released": False}
        if users:
            query["user_id"] = {"$in": users}
        return [Held(d["app_id"], d["user_id"], d.get("version"), d.get("cause") or "", d.get("event_uuid"),
                     d.get("held_at")) async for d in self._db.guard_held.find(query).sort("user_id", ASCENDING)]

    async def is_set(self, app_id: str) -> bool:
        doc = await self._db.guards.find_one({"_id": key(self._org, app_id)})
        return bool(doc and doc.get("paused")) or bool(await self.held(app_id))

    async def release(self, app_id: str, users: list[str] | None, by: str) -> list[Held]:
        """Marks the chosen held keys released (the caller publishes a "look again" for each) and unpauses the app
        when nothing of it is held any more."""
        await self._db.guard_held.delete_many({"org": self._org, "app_id": app_id, "released": True,
                                               "released_at": {"$lt": datetime.now(UTC) - RELEASE_HONOURED}})
        chosen = await self.held(app_id, users)
        if chosen:
            await self._db.guard_held.update_many(
                {"_id": {"$in": [key(self._org, h.app_id, h.user_id) for h in chosen]}},
                {"$set": {"released": True, "released_by": by, "released_at": datetime.now(UTC)}})
        await self._unpause_if_done(app_id)
        return chosen

    async def discard(self, app_id: str, users: list[str] | None, by: str) -> list[Held]:
        chosen = await self.held(app_id, users)
        if chosen:
            await self._db.guard_held.delete_many(
                {"_id": {"$in": [key(self._org, h.app_id, h.user_id) for h in chosen]}, "released": False})
        await self._unpause_if_done(app_id)
        return chosen

    async def _unpause_if_done(self, app_id: str) -> None:
        if not await self.held(app_id):
            await self._db.guards.update_one({"_id": key(self._org, app_id)},
                                             {"$set": {"paused": False, "count": 0, "window_start": datetime.now(UTC)},
                                              "$unset": {"paused_at": ""}})
