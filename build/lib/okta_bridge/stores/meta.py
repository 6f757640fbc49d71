"""Which Okta org the database belongs to: the owner of ``bridge_meta``.

Every document that belongs to an org carries the org in its key; started against another org, the bridge refuses
(:func:`claim_org`).
"""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

__all__ = ["OrgMismatchError", "claim_org"]


class OrgMismatchError(RuntimeError):
    pass


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
