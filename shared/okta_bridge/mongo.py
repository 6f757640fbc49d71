"""MongoDB access (``pymongo.AsyncMongoClient``): collection names, keys and indexes in one place.

Every document that belongs to an org carries the org in its key, and ``bridge_meta`` records which org the
database belongs to: started against another org, the bridge refuses (:func:`claim_org`).
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

__all__ = ["OrgMismatchError", "claim_org", "connect", "ensure_indexes", "key"]


class OrgMismatchError(RuntimeError):
    pass


def connect(url: str, db: str) -> tuple[AsyncMongoClient, AsyncDatabase]:
    # a write is acknowledged once it is journaled on a majority: what the bridge has acked (a message, a cursor,
    # a version) survives a database crash; an explicit option in the URL still wins
    client: AsyncMongoClient = AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=10_000,
                                                **_durable_unless_set(url))
    return client, client[db]


def _durable_unless_set(url: str) -> dict:
    query = url.partition("?")[2].lower()
    return {} if "w=" in query or "journal=" in query else {"w": "majority", "journal": True}


def key(*parts: str) -> str:
    return "|".join(parts)


async def claim_org(db: AsyncDatabase, org: str) -> None:
    try:
        await db.bridge_meta.update_one({"_id": "org"}, {"$setOnInsert": {"org": org}}, upsert=True)
    except DuplicateKeyError:  # another service claimed it at the same moment
        pass
    doc = await db.bridge_meta.find_one({"_id": "org"})
    if doc is None or doc["org"] != org:
        raise OrgMismatchError(
            f"this database holds the state of Okta org {doc and doc['org']}, not {org}; "
            "use another MONGODB_DB (or clear the state) to bridge another org"
        )


async def ensure_indexes(db: AsyncDatabase, audit_ttl_days: int | None = None) -> None:
    await db.seen_events.create_index("at", expireAfterSeconds=14 * 86400)
    await db.assignments.create_index([("org", ASCENDING), ("user_id", ASCENDING)])
    await db.assignments.create_index([("org", ASCENDING), ("app_id", ASCENDING), ("sync_id", ASCENDING)])
    if audit_ttl_days is not None:
        await db.audit.create_index("at", expireAfterSeconds=audit_ttl_days * 86400, name="audit_ttl")
        await db.audit.create_index([("okta_user_id", ASCENDING), ("at", DESCENDING)])
        await db.audit.create_index([("app_id", ASCENDING), ("at", DESCENDING)])
        await db.audit.create_index([("okta_group_id", ASCENDING), ("at", DESCENDING)], sparse=True)
        await db.audit.create_index([("step", ASCENDING), ("at", DESCENDING)])
        await db.audit.create_index([("event_uuid", ASCENDING)])
