"""Assignment table and plan versions in MongoDB, keyed by (org, app, user): the owner of ``assignments`` and
``writebacks``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReadPreference, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from okta_bridge.mongo import key

__all__ = ["Assignment", "ListingFence", "MongoAssignments", "MongoWritebacks", "Take"]

@dataclass(frozen=True)
class Assignment:
    app_id: str
    user_id: str
    app_username: str | None
    assigned: bool


@dataclass(frozen=True)
class ListingFence:
    """A full sync's page: the database's time just before it was asked for, and the plan window."""
    asked_at: datetime
    window: timedelta


@dataclass(frozen=True)
class Take:
    """A plan version taken for one (app, user) key."""
    version: int
    assignment: Assignment | None
    at: datetime  # the database's time of this take
    trusted: bool = False  # a listing take: no plan of the key can hold data newer than the page (see take_version)


IN_CHUNK = 200  # ids per $in: the local test server grows worse than linearly with more
FAR_PAST, FAR_FUTURE = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)


class MongoAssignments:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org
        # the version check after a read must see the newest take: never a secondary
        self._primary = db.assignments.with_options(read_preference=ReadPreference.PRIMARY)

    async def next_version(self, app_id: str, user_id: str) -> int:
        return (await self.take_version(app_id, user_id)).version

    async def take_version(self, app_id: str, user_id: str, *, assigned: bool | None = None,
                           app_username: str | None = None, as_of: int | None = None,
                           listing: ListingFence | None = None) -> Take:
        """One round trip: record what a membership event says (if anything), ``$inc`` the key's plan version
        (kept on its assignment row), stamp the take with the server's ``$$NOW`` and read the row back.

        ``as_of`` (the event's ``published`` time, microseconds): the assignment and the app username are each
        recorded only when the event is no older than the last one recorded for them (``assigned_as_of``,
        ``username_as_of``), so membership events processed out of order still end at the latest; without it the
        change is recorded as it comes.

        Stamps: ``last_take_at`` (every take) and ``last_read_take_at`` (takes whose plan reads Okta: all but a
        trusted listing take). A row with versions from before the stamps existed is never trusted."""
        stamp_default = {"$cond": [{"$gt": [{"$ifNull": ["$plan_version", 0]}, 0]}, FAR_FUTURE, FAR_PAST]}
        trusted: Any = False
        if listing is not None:
            trusted = {"$and": [
                {"$lt": [{"$ifNull": ["$last_take_at", stamp_default]}, listing.asked_at]},
                {"$lt": [{"$ifNull": ["$last_read_take_at", stamp_default]}, listing.asked_at - listing.window]}]}
        fields: dict = {"org": _lit(self._org), "app_id": _lit(app_id), "user_id": _lit(user_id),
                        "updated_at": datetime.now(UTC), "take_trusted": trusted,
                        "assigned": {"$ifNull": ["$assigned", False]}}
        if assigned is not None:
            fields["assigned"] = {"$cond": [_newer(as_of, "assigned_as_of"), assigned, {"$ifNull": ["$assigned", False]}]}
            if as_of is not None:
                fields["assigned_as_of"] = {"$max": [as_of, {"$ifNull": ["$assigned_as_of", -1]}]}
        if app_username is not None:
            fields["app_username"] = {"$cond": [_newer(as_of, "username_as_of"), _lit(app_username), "$app_username"]}
            if as_of is not None:
                fields["username_as_of"] = {"$max": [as_of, {"$ifNull": ["$username_as_of", -1]}]}
        # a trusted take reads nothing: the read stamp stays (FAR_PAST on a new row, so that the next page trusts)
        stamps = {"plan_version": {"$add": [{"$ifNull": ["$plan_version", 0]}, 1]}, "last_take_at": "$$NOW",
                  "last_read_take_at": {"$cond": ["$take_trusted", {"$ifNull": ["$last_read_take_at", FAR_PAST]},
                                                  "$$NOW"]}}
        for _ in range(3):  # two first writes of one row at once: one inserts, the other updates on a retry
            try:
                doc = await self._db.assignments.find_one_and_update(
                    {"_id": key(self._org, app_id, user_id)},
                    [{"$set": fields}, {"$set": stamps}, {"$unset": ["take_trusted"]}],
                    upsert=True, return_document=ReturnDocument.AFTER)
            except DuplicateKeyError:
                continue
            if doc is not None:
                at = _utc(doc["last_take_at"])  # one $$NOW per update: an untrusted take set both stamps to it
                return Take(int(doc["plan_version"]), _row(doc), at, _utc(doc["last_read_take_at"]) != at)
        raise RuntimeError(f"assignment row {app_id}/{user_id}: no document after three upserts")

    async def check(self, app_id: str, user_id: str) -> tuple[int, datetime]:
        """One read from the primary: the key's newest version and the server's ``$$NOW``."""
        cursor = await self._primary.aggregate([{"$match": {"_id": key(self._org, app_id, user_id)}},
                                                {"$project": {"plan_version": 1, "now": "$$NOW"}}])
        docs = await cursor.to_list()
        if not docs:
            return 0, await self.now()
        return int(docs[0].get("plan_version") or 0), _utc(docs[0]["now"])

    async def now(self) -> datetime:
        """``hello``'s ``localTime`` on the primary: the clock ``$$NOW`` reads there."""
        return _utc((await self._db.command("hello", read_preference=ReadPreference.PRIMARY))["localTime"])

    async def get(self, app_id: str, user_id: str) -> Assignment | None:
        doc = await self._db.assignments.find_one({"_id": key(self._org, app_id, user_id)})
        return _row(doc) if doc else None

    async def ensure_indexes(self) -> None:
        await self._db.assignments.create_index([("org", ASCENDING), ("user_id", ASCENDING)])
        await self._db.assignments.create_index([("org", ASCENDING), ("app_id", ASCENDING), ("sync_id", ASCENDING)])

    async def users_with_assignments(self, user_ids: list[str], app_ids: list[str]) -> set[str]:
        """Of these users, those with a row for one of these apps: ``$in`` on the (org, user_id) index, a few hundred
        ids a query."""
        wanted, found = set(app_ids), set()
        for start in range(0, len(user_ids), IN_CHUNK):
            query = {"org": self._org, "user_id": {"$in": user_ids[start:start + IN_CHUNK]}}
            async for d in self._db.assignments.find(query, {"app_id": 1, "user_id": 1}, batch_size=10_000):
                if d["app_id"] in wanted:
                    found.add(d["user_id"])
        return found

    async def for_user(self, user_id: str, app_ids: list[str]) -> list[Assignment]:
        """Equality on the (org, user_id) index only; the app filter is applied here (a user has few rows)."""
        wanted = set(app_ids)
        cursor = self._db.assignments.find({"org": self._org, "user_id": user_id})
        return [_row(d) async for d in cursor if d["app_id"] in wanted]

    async def set(self, app_id: str, user_id: str, *, assigned: bool | None = None,
                  app_username: str | None = None, sync_id: str | None = None) -> None:
        fields = {"org": self._org, "app_id": app_id, "user_id": user_id, "updated_at": datetime.now(UTC)}
        if assigned is not None:
            fields["assigned"] = assigned
        if app_username is not None:
            fields["app_username"] = app_username
        if sync_id is not None:
            fields["sync_id"] = sync_id
        await self._db.assignments.update_one({"_id": key(self._org, app_id, user_id)}, {"$set": fields}, upsert=True)

    async def record_listing(self, app_id: str, rows: list[tuple[str, str | None]], sync_id: str,
                             as_of: int) -> None:
        if not rows:
            return
        now = datetime.now(UTC)
        newer = {"$lt": [{"$ifNull": ["$assigned_as_of", -1]}, as_of]}  # no membership event since the listing
        newer_name = {"$lt": [{"$ifNull": ["$username_as_of", -1]}, as_of]}
        await self._db.assignments.bulk_write([
            UpdateOne({"_id": key(self._org, app_id, user_id)}, [{"$set": {
                "org": _lit(self._org), "app_id": _lit(app_id), "user_id": _lit(user_id), "sync_id": _lit(sync_id),
                "updated_at": now,
                "assigned": {"$cond": [newer, True, {"$ifNull": ["$assigned", False]}]},
                "assigned_as_of": {"$max": [as_of, {"$ifNull": ["$assigned_as_of", -1]}]},
                "app_username": {"$cond": [newer_name, _lit(username), "$app_username"]},
                "username_as_of": {"$max": [as_of, {"$ifNull": ["$username_as_of", -1]}]}}}], upsert=True)
            for user_id, username in rows
        ], ordered=False)

    async def unassign_missing(self, app_id: str, sync_id: str, as_of: int) -> list[str]:
        query = {"org": self._org, "app_id": app_id, "assigned": True, "sync_id": {"$ne": sync_id},
                 "assigned_as_of": {"$not": {"$gte": as_of}}}  # missing counts as old
        users = [d["user_id"] async for d in self._db.assignments.find(query, {"user_id": 1})]
        if users:
            await self._db.assignments.update_many(
                {**query, "user_id": {"$in": users}},
                {"$set": {"assigned": False, "assigned_as_of": as_of, "updated_at": datetime.now(UTC)}})
        return users


def _lit(value: Any) -> dict:
    """A value in an update pipeline is an expression: a string from Okta that starts with ``$`` must stay text."""
    return {"$literal": value}


def _newer(as_of: int | None, field: str) -> Any:
    """The event is no older than the last one recorded for ``field`` (always, for a change without a time)."""
    return {"$gte": [as_of, {"$ifNull": [f"${field}", -1]}]} if as_of is not None else True


def _utc(at: datetime | None) -> datetime | None:
    """PyMongo decodes BSON dates as naive UTC unless the client is tz-aware."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def _row(doc: dict) -> Assignment:
    return Assignment(doc["app_id"], doc["user_id"], doc.get("app_username"), bool(doc.get("assigned")))


class MongoWritebacks:
    """The last values written to each app-user profile, so only changes are written."""

    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org

    async def changed(self, app_id: str, user_id: str, values: dict) -> dict:
        doc = await self._db.writebacks.find_one({"_id": key(self._org, app_id, user_id)}) or {}
        last = doc.get("values", {})
        return {k: v for k, v in values.items() if last.get(k) != v}

    async def remember(self, app_id: str, user_id: str, values: dict) -> None:
        await self._db.writebacks.update_one(
            {"_id": key(self._org, app_id, user_id)},
            {"$set": {f"values.{k}": v for k, v in values.items()} | {"updated_at": datetime.now(UTC)}}, upsert=True)
