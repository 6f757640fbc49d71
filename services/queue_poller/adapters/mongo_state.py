"""Cursor, dedupe set and assignment look-ups in MongoDB, all keyed by the Okta org."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from okta_bridge.group_state import GroupState
from okta_bridge.mongo import key
from queue_poller.ports import CursorState, LeadershipLost


class MongoPollerState:
    def __init__(self, db: AsyncDatabase, org: str) -> None:
        self._db, self._org = db, org
        self.fence: int | None = None  # the poller lease's token; cursor writes with an older one are refused

    async def load(self) -> CursorState | None:
        doc = await self._db.poll_cursor.find_one({"_id": self._org})
        if doc is None:
            return None
        return CursorState(doc.get("next_link"), doc.get("last_success_at"), doc.get("known_apps", []))

    async def save(self, state: CursorState) -> None:
        """Fenced: refused (``LeadershipLost``) once a poller with a newer lease token has written the cursor."""
        fields = {"next_link": state.next_link, "last_success_at": state.last_success_at,
                  "known_apps": state.known_apps}
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
        return await GroupState(self._db, self._org).pushed_group_ids()

    async def users_with_assignments(self, user_ids: list[str], app_ids: list[str]) -> set[str]:
        """One equality look-up per user on the (org, user_id) index, concurrently: an index-friendly query on
        any MongoDB, where an ``$in`` over a secondary field may not use the index."""
        wanted = set(app_ids)

        async def assigned(user_id: str) -> bool:
            cursor = self._db.assignments.find({"org": self._org, "user_id": user_id}, {"app_id": 1})
            return any([d["app_id"] in wanted async for d in cursor])

        flags = await asyncio.gather(*(assigned(u) for u in user_ids))
        return {u for u, ok in zip(user_ids, flags) if ok}
