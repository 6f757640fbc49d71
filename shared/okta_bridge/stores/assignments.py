"""Assignment table and plan versions in MongoDB, keyed by (org, app, user): the owner of ``assignments`` and
``writebacks``. Everything the translator does for a batch of keys, it does in two round trips for the whole batch.

A row holds what membership events and listings say (``assigned`` and ``app_username``, each with the Okta time it
is as of), the last known app-user profile (``app_profile``, what ``appProfile.*`` mappings read: from listings,
from one app-user read per app-user profile event, and from the bridge's own write-back, with the Okta time it is as
of, so that every plan carries it and an event-driven PUT never clears it), the key's plan version, ``built_max`` (the newest user ``lastUpdated``, in µs, a plan of the key was built
from) and ``rev``, which every write of the row moves on.

* ``read_rows``: one ``find`` reads every row of a batch's users (on the (org, user_id) index): the rows of the
  batch's keys, and for each user the newest ``lastUpdated`` any plan of that user, for any app, was built from
  (``Row.user_built_max``, the floor a batched Okta answer must reach to be trusted).
* ``commit``: one unordered ``bulk_write`` stores, per key, the plan's new version, the ``lastUpdated`` it was built
  from and the membership change it folded in, each only if the row is as it was read (``rev``) and no earlier plan
  was built from newer user data (``built_max`` ≤ the read's). An operation whose filter matches nothing fails on
  its upsert's duplicate ``_id``: that is how a batch learns exactly which keys did not commit (they are read again).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Iterable

from pymongo import ASCENDING, ReadPreference, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from okta_bridge.mongo import key

__all__ = ["Assignment", "Commit", "Landing", "MembershipChange", "MongoAssignments", "MongoWritebacks", "Row",
           "UNKNOWN_UPDATED", "fold"]

IN_CHUNK = 200  # ids per $in: the local test server grows worse than linearly with more
UNKNOWN_UPDATED = 2**62  # a user Okta confirmed gone: nothing read later can be newer


@dataclass(frozen=True)
class Assignment:
    app_id: str
    user_id: str
    app_username: str | None
    assigned: bool


@dataclass(frozen=True)
class MembershipChange:
    """What a batch's membership events say about one key, folded (the newest of each wins)."""
    assigned: bool | None = None
    assigned_as_of: int | None = None  # the event's ``published`` (µs); None: recorded as it comes
    app_username: str | None = None
    username_as_of: int | None = None
    app_profile: dict[str, Any] | None = None  # the app user's whole profile, as an app-user read answered it
    app_profile_as_of: int | None = None  # Okta's time (µs) the read is as of


@dataclass(frozen=True)
class Row:
    """A key's row as read."""
    app_id: str
    user_id: str
    version: int = 0  # the newest plan version
    rev: int = 0  # moves on with every write of the row
    assigned: bool = False
    assigned_as_of: int = -1
    app_username: str | None = None
    username_as_of: int = -1
    built_max: int = -1
    exists: bool = False
    app_profile: dict[str, Any] | None = field(default=None, hash=False)  # None: never known
    app_profile_as_of: int = -1
    user_built_max: int = -1  # the newest ``built_max`` of any row of this user (every app), read with this row

    @property
    def assignment(self) -> Assignment | None:
        return Assignment(self.app_id, self.user_id, self.app_username, self.assigned) if self.exists else None


class Landing(Enum):
    """What became of one key's commit."""
    LANDED = "landed"
    CHANGED = "changed"  # the row moved on since it was read, or an earlier plan used newer data: read it again
    REFUSED = "refused"  # the database refused this key's write alone: its message is retried, the batch's others stand


@dataclass(frozen=True)
class Commit:
    """A plan of one key going out: the row it was made from, its version, the user data's ``lastUpdated``."""
    row: Row
    version: int
    updated: int
    change: MembershipChange | None = None


def fold(row: Row, change: MembershipChange | None) -> tuple[Row, dict[str, Any]]:
    """The row after a membership change (recorded only when no older than what is recorded), and the fields to set.
    The same rules as a listing's (``record_listing``): membership events processed out of order end at the newest."""
    if change is None:
        return row, {}
    fields: dict[str, Any] = {}
    assigned, assigned_as_of = row.assigned, row.assigned_as_of
    if change.assigned is not None and (change.assigned_as_of is None or change.assigned_as_of >= row.assigned_as_of):
        assigned = change.assigned
        if change.assigned_as_of is not None:
            assigned_as_of = max(change.assigned_as_of, row.assigned_as_of)
        fields.update(assigned=assigned, assigned_as_of=assigned_as_of)
    username, username_as_of = row.app_username, row.username_as_of
    if change.app_username is not None and (change.username_as_of is None
                                            or change.username_as_of >= row.username_as_of):
        username = change.app_username
        if change.username_as_of is not None:
            username_as_of = max(change.username_as_of, row.username_as_of)
        fields.update(app_username=username, username_as_of=username_as_of)
    profile, profile_as_of = row.app_profile, row.app_profile_as_of
    if change.app_profile is not None and (change.app_profile_as_of is None
                                           or change.app_profile_as_of >= row.app_profile_as_of):
        profile = dict(change.app_profile)
        if change.app_profile_as_of is not None:
            profile_as_of = max(change.app_profile_as_of, row.app_profile_as_of)
        fields.update(app_profile=profile, app_profile_as_of=profile_as_of)
    folded = replace(row, assigned=assigned, assigned_as_of=assigned_as_of, app_username=username,
                     username_as_of=username_as_of, exists=True, app_profile=profile, app_profile_as_of=profile_as_of)
    return folded, fields


class MongoAssignments:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org
        # the checks after a read must see the newest take: never a secondary
        self._primary = db.assignments.with_options(read_preference=ReadPreference.PRIMARY)

    def _id(self, app_id: str, user_id: str) -> str:
        return key(self._org, app_id, user_id)

    async def ensure_indexes(self) -> None:
        await self._db.assignments.create_index([("org", ASCENDING), ("user_id", ASCENDING)])
        await self._db.assignments.create_index([("org", ASCENDING), ("app_id", ASCENDING), ("sync_id", ASCENDING)])

    # --- plans -------------------------------------------------------------------------------------------------------
    async def read_rows(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Row]:
        """The rows of a batch's keys (a key without a row reads as version 0, unassigned), each with its user's
        ``user_built_max`` over the user's rows of every app; from the primary, one ``find`` per few hundred users."""
        found: dict[tuple[str, str], Row] = {}
        floor: dict[str, int] = {}
        users = sorted({u for _, u in keys})
        for start in range(0, len(users), IN_CHUNK):
            query = {"org": self._org, "user_id": {"$in": users[start:start + IN_CHUNK]}}
            async for doc in self._primary.find(query, batch_size=10_000):
                row = _read(doc)
                floor[row.user_id] = max(floor.get(row.user_id, -1), row.built_max)
                found[(row.app_id, row.user_id)] = row
        return {k: replace(found.get(k) or Row(*k), user_built_max=floor.get(k[1], -1)) for k in keys}

    async def commit(self, commits: list[Commit]) -> list[Landing]:
        """Per commit, whether it landed (the row was as read, and its read is not older than an earlier plan's),
        found the row changed, or was refused by the database on its own (the others of the batch stand)."""
        if not commits:
            return []
        now = datetime.now(UTC)
        ops = []
        for c in commits:
            row, fields = fold(c.row, c.change)
            fields.update(org=self._org, app_id=row.app_id, user_id=row.user_id, plan_version=c.version,
                          rev=row.rev + 1, built_max=c.updated, updated_at=now)
            ops.append(UpdateOne({"_id": self._id(row.app_id, row.user_id), "rev": row.rev or None,
                                  "built_max": {"$not": {"$gt": c.updated}}}, {"$set": fields}, upsert=True))
        changed, refused = await _bulk(self._db.assignments, ops)
        return [Landing.REFUSED if i in refused else Landing.CHANGED if i in changed else Landing.LANDED
                for i in range(len(commits))]

    async def count_assigned(self, app_id: str) -> int:
        """The app's assigned users (the deactivation guard's base for a share threshold)."""
        return await self._db.assignments.count_documents({"org": self._org, "app_id": app_id, "assigned": True})

    # --- assignments -------------------------------------------------------------------------------------------------
    async def get(self, app_id: str, user_id: str) -> Assignment | None:
        doc = await self._db.assignments.find_one({"_id": self._id(app_id, user_id)})
        return _row(doc) if doc else None

    async def for_users(self, user_ids: Iterable[str], app_ids: Iterable[str]) -> dict[str, list[Assignment]]:
        """Each user's rows for these apps: ``$in`` on the (org, user_id) index, a few hundred users a query."""
        users, wanted = sorted(set(user_ids)), set(app_ids)
        out: dict[str, list[Assignment]] = {u: [] for u in users}
        for start in range(0, len(users), IN_CHUNK):
            query = {"org": self._org, "user_id": {"$in": users[start:start + IN_CHUNK]}}
            async for d in self._db.assignments.find(query, batch_size=10_000):
                if d["app_id"] in wanted:
                    out[d["user_id"]].append(_row(d))
        return out

    async def users_with_assignments(self, user_ids: list[str], app_ids: list[str]) -> set[str]:
        """Of these users, those with a row for one of these apps."""
        return {u for u, rows in (await self.for_users(user_ids, app_ids)).items() if rows}

    async def record_listing(self, app_id: str, rows: list[tuple[str, str | None]], sync_id: str,
                             as_of: int, profiles: dict[str, dict[str, Any]] | None = None) -> None:
        """Marks the rows listed by this sync; a row takes the listing's assignment only when no membership event
        newer than ``as_of`` (Okta's time before the page was asked for, microseconds) was recorded, and the listed
        app-user profile (``profiles``, by user id) only when no newer one was read."""
        if not rows:
            return
        now = datetime.now(UTC)
        newer = {"$lt": [{"$ifNull": ["$assigned_as_of", -1]}, as_of]}  # no membership event since the listing
        newer_name = {"$lt": [{"$ifNull": ["$username_as_of", -1]}, as_of]}
        newer_profile = {"$lt": [{"$ifNull": ["$app_profile_as_of", -1]}, as_of]}
        ops = []
        for user_id, username in rows:
            fields: dict[str, Any] = {
                "org": _lit(self._org), "app_id": _lit(app_id), "user_id": _lit(user_id), "sync_id": _lit(sync_id),
                "updated_at": now,
                "assigned": {"$cond": [newer, True, {"$ifNull": ["$assigned", False]}]},
                "assigned_as_of": {"$max": [as_of, {"$ifNull": ["$assigned_as_of", -1]}]},
                "app_username": {"$cond": [newer_name, _lit(username), "$app_username"]},
                "username_as_of": {"$max": [as_of, {"$ifNull": ["$username_as_of", -1]}]},
                "rev": {"$add": [{"$ifNull": ["$rev", 0]}, 1]}}
            profile = (profiles or {}).get(user_id)
            if isinstance(profile, dict):
                fields["app_profile"] = {"$cond": [newer_profile, _lit(profile), "$app_profile"]}
                fields["app_profile_as_of"] = {"$max": [as_of, {"$ifNull": ["$app_profile_as_of", -1]}]}
            ops.append(UpdateOne({"_id": self._id(app_id, user_id)}, [{"$set": fields}], upsert=True))
        await self._db.assignments.bulk_write(ops, ordered=False)

    async def merge_app_profile(self, app_id: str, user_id: str, values: dict[str, Any], as_of: int) -> None:
        """The values the bridge itself wrote to the app-user profile (write-back; the log events of that write are
        ours and not read back): merged into the known profile so the next plan sends them, not the old ones."""
        if not values:
            return
        await self._db.assignments.update_one(
            {"_id": self._id(app_id, user_id),
             "$or": [{"app_profile": {"$exists": False}}, {"app_profile": {"$type": "object"}}]},
            {"$set": {**{f"app_profile.{k}": v for k, v in values.items()}, "updated_at": datetime.now(UTC)},
             "$max": {"app_profile_as_of": as_of}, "$inc": {"rev": 1}})

    async def unassign_missing(self, app_id: str, sync_id: str, as_of: int) -> list[str]:
        """Rows this sync did not list, assigned as of before ``as_of`` (Okta's time before the sync's first page):
        marked unassigned and returned. A row assigned by an event published since is left alone."""
        query = {"org": self._org, "app_id": app_id, "assigned": True, "sync_id": {"$ne": sync_id},
                 "assigned_as_of": {"$not": {"$gte": as_of}}}  # missing counts as old
        users = [d["user_id"] async for d in self._db.assignments.find(query, {"user_id": 1}, batch_size=10_000)]
        if users:
            await self._db.assignments.update_many(
                {**query, "user_id": {"$in": users}},
                {"$set": {"assigned": False, "assigned_as_of": as_of, "updated_at": datetime.now(UTC)},
                 "$inc": {"rev": 1}})
        return users


async def _bulk(collection, ops: list[UpdateOne]) -> tuple[set[int], set[int]]:
    """An unordered bulk write; returns the indexes of the operations that failed on a duplicate key (an upsert
    whose filter matched nothing: the row changed) and of those the database refused otherwise, each on its own.
    A failure of the whole write (the database away) is raised."""
    try:
        await collection.bulk_write(ops, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if exc.details.get("writeConcernErrors") or not errors:  # nothing says which operations are durable
            raise
        return ({e["index"] for e in errors if e.get("code") == 11000},
                {e["index"] for e in errors if e.get("code") != 11000})
    return set(), set()


def _lit(value: Any) -> dict:
    """A value in an update pipeline is an expression: a string from Okta that starts with ``$`` must stay text."""
    return {"$literal": value}


def _read(doc: dict) -> Row:
    profile = doc.get("app_profile")
    return Row(doc["app_id"], doc["user_id"], _int(doc, "plan_version", 0), _int(doc, "rev", 0),
               bool(doc.get("assigned")), _int(doc, "assigned_as_of", -1), doc.get("app_username"),
               _int(doc, "username_as_of", -1), _int(doc, "built_max", -1), True,
               profile if isinstance(profile, dict) else None, _int(doc, "app_profile_as_of", -1))


def _int(doc: dict, field: str, default: int) -> int:
    value = doc.get(field)
    return int(value) if value is not None else default


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
