"""The audit trail in MongoDB: the owner of ``audit``. The audit-recorder writes it in batches and serves it; the
operator commands read outcomes from it.

Indexes: ``(okta_user_id, at)``, ``(app_id, at)``, ``(okta_group_id, at)``, ``(step, at)``, ``event_uuid``, ``trace_id``
(one change's timeline in the console), and a TTL index on ``at`` (the retention; a change is applied in place with
``collMod``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import hashlib

import bson
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, OperationFailure

from okta_bridge.contracts import AuditStep

__all__ = ["AuditStore", "BadPageToken", "record_id", "with_ids"]


class BadPageToken(ValueError):
    pass


def record_id(at: datetime | None, body: bytes, ordinal: int = 0) -> ObjectId:
    """An audit record's ``_id``: its time in seconds (what an ObjectId starts with, held to what four bytes hold)
    and in 64 µs steps within the second (so ids come nearly in time order, as the records arrive, and an index on
    ``_id`` grows at its end), then a hash of its content and its ordinal among identical records of its message."""
    if isinstance(at, datetime):
        seconds, steps = min(max(int(at.timestamp()), 0), 2**32 - 1), at.microsecond >> 6
    else:
        seconds, steps = 0, 0
    digest = hashlib.sha256(body + ordinal.to_bytes(4, "big")).digest()[:5]
    return ObjectId(seconds.to_bytes(4, "big") + steps.to_bytes(3, "big") + digest)


def with_ids(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of ONE message, each given its ``_id`` (:func:`record_id`): identical records of the message
    are told apart by their order in it, whatever batch or write the message later lands in."""
    seen: dict[bytes, int] = {}
    for doc in docs:
        body = bson.encode({k: v for k, v in doc.items() if k != "_id"})
        ordinal = seen[body] = seen.get(body, -1) + 1
        doc.setdefault("_id", record_id(doc.get("at"), body, ordinal))
    return docs



class AuditStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self._db = db

    async def ensure_indexes(self, retention_days: int) -> None:
        try:
            await self._indexes(retention_days)
        except OperationFailure:  # the retention changed: adjust the TTL index in place
            await self._db.command("collMod", "audit",
                                   index={"name": "audit_ttl", "expireAfterSeconds": retention_days * 86400})
            await self._indexes(retention_days)

    async def _indexes(self, days: int) -> None:
        audit = self._db.audit
        await audit.create_index("at", expireAfterSeconds=days * 86400, name="audit_ttl")
        await audit.create_index([("okta_user_id", ASCENDING), ("at", DESCENDING)])
        await audit.create_index([("app_id", ASCENDING), ("at", DESCENDING)])
        await audit.create_index([("okta_group_id", ASCENDING), ("at", DESCENDING)], sparse=True)
        await audit.create_index([("step", ASCENDING), ("at", DESCENDING)])
        await audit.create_index([("event_uuid", ASCENDING)])
        await audit.create_index([("trace_id", ASCENDING)], sparse=True)

    async def insert(self, docs: list[dict[str, Any]]) -> list[int]:
        """Writes the records, each under an ``_id`` made from its content (its time first, so ``_id`` still sorts
        by time): a message written again after a partial failure finds its written records there (a duplicate key,
        ignored) and adds none twice. Returns the indexes of the records that failed otherwise; a failure of the
        whole write (the database away) is raised."""
        if not docs:
            return []
        with_ids([d for d in docs if "_id" not in d])  # a caller gives each message's records theirs (with_ids)
        try:
            await self._db.audit.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):  # nothing says which records are durable: all again
                raise
            return sorted(e["index"] for e in exc.details.get("writeErrors", []) if e.get("code") != 11000)
        return []

    async def page(self, filters: dict[str, Any], since: datetime | None, until: datetime | None, limit: int,
                   after: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first by the step's time; keyset paging on ``(at, _id)``, stable while records keep arriving."""
        query: dict[str, Any] = {k: v for k, v in filters.items() if v}
        if since or until:
            query["at"] = {k: v for k, v in (("$gte", since), ("$lt", until)) if v}
        if after:
            try:
                at_text, _, oid = after.rpartition("~")
                at, last = datetime.fromisoformat(at_text), ObjectId(oid)
            except Exception:  # noqa: BLE001 - any malformed token
                raise BadPageToken("after: not a page token") from None
            query = {"$and": [query, {"$or": [{"at": {"$lt": at}}, {"at": at, "_id": {"$lt": last}}]}]}
        docs = await self._db.audit.find(query).sort([("at", -1), ("_id", -1)]).limit(limit).to_list(limit)
        items = [{**{k: v for k, v in d.items() if k != "_id"}, "id": str(d["_id"])} for d in docs]
        token = f"{docs[-1]['at'].isoformat()}~{docs[-1]['_id']}" if len(docs) == limit else None
        return items, token

    async def timeline(self, trace_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """Every record of one trace (one change: received, planned, each attempt, applied), oldest first."""
        docs = await self._db.audit.find({"trace_id": trace_id}).sort([("at", 1), ("_id", 1)]).limit(limit) \
            .to_list(limit)
        return [{**{k: v for k, v in d.items() if k != "_id"}, "id": str(d["_id"])} for d in docs]

    async def app_activity(self, app_id: str, since: datetime) -> dict[str, Any]:
        """An app's dispatcher outcomes since ``since`` (counts by step) and its last applied change."""
        counts: dict[str, int] = {}
        pipeline = [{"$match": {"app_id": app_id, "at": {"$gte": since}, "service": "scim-dispatcher"}},
                    {"$group": {"_id": "$step", "n": {"$sum": 1}}}]
        async for row in await self._db.audit.aggregate(pipeline):
            counts[str(row["_id"])] = int(row["n"])
        last = await self._db.audit.find_one({"app_id": app_id, "step": AuditStep.APPLIED.value},
                                             sort=[("at", -1)])
        return {"counts": counts, "last_applied_at": last["at"] if last else None,
                "last_applied_trace": last.get("trace_id") if last else None}

    async def outcome_of_group_plan(self, group_id: str, version: int, service: str,
                                    steps: list[AuditStep]) -> dict[str, Any] | None:
        return await self._db.audit.find_one({"okta_group_id": group_id, "plan_version": version,
                                              "service": service, "step": {"$in": [s.value for s in steps]}})

    async def ping(self) -> None:
        await self._db.command("ping")
