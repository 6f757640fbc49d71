"""The poller's state in MongoDB, keyed by the Okta org: the owner of ``poll_cursor`` (the System Log link) and
``seen_events`` (event uuids already published, kept 14 days)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from okta_bridge.stores.assignments import MongoAssignments
from okta_bridge.stores.groups import GroupState
from okta_bridge.mongo import key


@dataclass
class CursorState:
    next_link: str | None
    last_success_at: datetime | None
    known_apps: list[str]
    # Okta's time a new polling link may start from and lose nothing: the newest ``published`` read, or the time of
    # a page that reached the log's end. A link asking for another filter is replaced by one from here (less a margin)
    resume_from: datetime | None = None


class LeadershipLost(RuntimeError):
    """Another poller holds the lease now (its token fenced our cursor write): stop polling, stand by."""


class MongoPollerState:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org
        # routing asks the owners of assignments and pushed groups
        self._assignments, self._groups = MongoAssignments(db, org), GroupState(db, org)
        self.fence: int | None = None  # the poller lease's token; cursor writes with an older one are refused

    async def load(self) -> CursorState | None:
        doc = await self._db.poll_cursor.find_one({"_id": self._org})
        if doc is None:
            return None
        return CursorState(doc.get("next_link"), doc.get("last_success_at"), doc.get("known_apps", []),
                           doc.get("resume_from"))

    async def save(self, state: CursorState) -> None:
        """Fenced: refused (``LeadershipLost``) once a poller with a newer lease token has written the cursor."""
        fields = {"next_link": state.next_link, "last_success_at": state.last_success_at,
                  "known_apps": state.known_apps, "resume_from": state.resume_from}
        query: dict = {"_id": self._org}
        if self.fence is not None:
            fields["fence"] = self.fence
            query["$or"] = [{"fence": {"$exists": False}}, {"fence": {"$lte": self.fence}}]
        try:
            result = await self._db.poll_cursor.update_one(query, {"$set": fields}, upsert=True)
        except DuplicateKeyError:
            raise LeadershipLost(f"the cursor was written by a newer poller (our token {self.fence})") from None
        if not result.acknowledged:
            raise LeadershipLost("cursor write not acknowledged")

    async def unseen(self, uuids: list[str]) -> set[str]:
        if not uuids:
            return set()
        ids = [key(self._org, u) for u in uuids]
        seen = {d["_id"] async for d in self._db.seen_events.find({"_id": {"$in": ids}}, {"_id": 1})}
        return {u for u, i in zip(uuids, ids) if i not in seen}

    async def mark_seen(self, uuids: list[str]) -> None:
        if not uuids:
            return
        now = datetime.now(UTC)
        try:
            await self._db.seen_events.insert_many([{"_id": key(self._org, u), "at": now} for u in uuids], ordered=False)
        except BulkWriteError as exc:  # already seen (a re-read page): only duplicate keys are acceptable
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

    async def pushed_group_ids(self) -> set[str]:
        """The groups pushed to any app (a handful of documents, read once per page with group events)."""
        return await self._groups.pushed_group_ids()

    async def users_with_assignments(self, user_ids: list[str], app_ids: list[str]) -> set[str]:
        return await self._assignments.users_with_assignments(user_ids, app_ids)

    async def ensure_indexes(self) -> None:
        await self._db.seen_events.create_index("at", expireAfterSeconds=14 * 86400)
