"""Leases in MongoDB: at most one holder of a key across processes, expiring on the database server's clock.

A lease is one document ``{_id: key, owner, expires, token}``. Taking it is one ``find_one_and_update`` with an
update pipeline: it matches when the lease is free, expired (``expires < $$NOW``, the server's time, so clocks of
the hosts do not matter) or already ours, and sets ``expires = $$NOW + ttl``. When someone else holds it, the upsert
collides on ``_id`` (``DuplicateKeyError``): busy. ``token`` grows on each change of holder (a release keeps the
document, so it never restarts); a holder passes it with its writes where a fencing check is needed. A holder that
dies leaves the lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
from datetime import UTC, datetime
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import AsyncIterator

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

__all__ = ["LeaseBusyError", "LeaseView", "Leases"]
log = logging.getLogger(__name__)


class LeaseBusyError(RuntimeError):
    """Another process holds the lease for longer than we were willing to wait (a transient condition)."""


@dataclass(frozen=True)
class LeaseView:
    """A lease as the database sees it now."""

    owner: str | None  # its holder, or None when released (or never taken)
    expires: datetime | None
    live: bool  # held and not expired, on the database server's clock


class Leases:
    @classmethod
    def keyed(cls, db: AsyncDatabase, ttl_s: float = 60.0, owner: str | None = None) -> "Leases":
        """Per-key leases (``leases``): a TTL index removes those of keys never used again."""
        return cls(db.leases, owner, ttl_s, expire_unused=True)

    @classmethod
    def poller(cls, db: AsyncDatabase, ttl_s: float) -> "Leases":
        """The poller's lease (``poller_lease``), without a TTL index: its fencing token must never restart."""
        return cls(db.poller_lease, None, ttl_s)

    def __init__(self, collection: AsyncCollection, owner: str | None = None, ttl_s: float = 60.0,
                 expire_unused: bool = False) -> None:
        self._coll = collection
        self._expire_unused = expire_unused
        self.owner = owner or f"{socket.gethostname()}:{secrets.token_hex(4)}"
        self._ttl_ms = int(ttl_s * 1000)
        self._local: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> (lock, tasks using it); dropped at 0

    async def ensure_indexes(self) -> None:
        """Leases of holders that died are taken over when their key is used again; per-key leases of keys never
        used again are removed an hour after they expired."""
        if self._expire_unused:
            await self._coll.create_index("expires", expireAfterSeconds=3600)

    async def try_acquire(self, key: str) -> int | None:
        """The fencing token when the lease is now ours (taken or renewed), else None."""
        # dates compared as milliseconds ($toLong of a date, documented): the same answer on every MongoDB-wire server
        expired = {"$lt": [{"$toLong": "$expires"}, {"$toLong": "$$NOW"}]}
        free = {"$or": [{"owner": self.owner}, {"$expr": expired}]}
        taking = {"$ne": ["$owner", self.owner]}
        try:
            doc = await self._coll.find_one_and_update(
                {"_id": key, **free},
                [{"$set": {"token": {"$cond": [taking, {"$add": [{"$ifNull": ["$token", 0]}, 1]}, "$token"]},
                           "owner": self.owner, "expires": {"$add": ["$$NOW", self._ttl_ms]}}}],
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            return None
        return int(doc["token"]) if doc else None  # no document: nothing matched and nothing was inserted: busy

    async def _renew(self, key: str, deadline: asyncio.Timeout, margin: float) -> None:
        """Held work can outlast the TTL (a push of 5,000 members): the lease is renewed every third of it, and
        each renewal moves the work's deadline. Work whose lease was not renewed in time is cancelled (TimeoutError
        in the holder) before anyone else can take the lease: never two holders at once."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                if await self.try_acquire(key) is None:
                    log.warning("lease %s was taken over while held: the work is stopped", key.split("|")[0])
                    deadline.reschedule(loop.time())
                    return
                deadline.reschedule(loop.time() + margin)
            except Exception as exc:  # noqa: BLE001 - the database is away: the next renewal tries again
                log.warning("lease renewal failed: %s", exc)

    async def peek(self, key: str) -> LeaseView:
        """A lease as the database sees it now (``bridgectl status``)."""
        cursor = await self._coll.aggregate([{"$match": {"_id": key}}, {"$addFields": {"_now": "$$NOW"}}])
        docs = await cursor.to_list(1)
        if not docs:
            return LeaseView(owner=None, expires=None, live=False)
        doc = docs[0]
        live = bool(doc.get("owner")) and doc.get("expires") is not None and doc["expires"] > doc["_now"]
        return LeaseView(owner=doc.get("owner"), expires=doc.get("expires"), live=live)

    async def release(self, key: str) -> None:
        """Frees the lease and keeps its document, so the next holder's token is still greater than ours."""
        await self._coll.update_one({"_id": key, "owner": self.owner},
                                    {"$set": {"owner": None, "expires": datetime.fromtimestamp(0, UTC)}})

    @asynccontextmanager
    async def hold(self, key: str, wait_s: float = 15.0) -> AsyncIterator[int]:
        """Exclusive across processes (the lease) and within this one (a lock, so only one task asks the database).
        Raises :class:`LeaseBusyError` after ``wait_s``; the caller retries later."""
        lock, users = self._local.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._local[key] = (lock, users + 1)
        try:
            async with lock:
                loop = asyncio.get_running_loop()
                deadline, delay = loop.time() + wait_s, 0.02
                while (token := await self.try_acquire(key)) is None:
                    if loop.time() >= deadline:
                        raise LeaseBusyError(f"lease {key.split('|')[0]} held by another process")
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.5)
                margin = self._ttl_ms / 1000 * 0.8  # before anyone else can take it
                try:
                    async with asyncio.timeout(margin) as deadline:
                        renewer = asyncio.create_task(self._renew(key, deadline, margin))
                        try:
                            yield token
                        finally:
                            renewer.cancel()
                            with suppress(asyncio.CancelledError):
                                await renewer
                finally:  # also after a failure: the next try, here or in another process, need not wait the TTL
                    await self.release(key)
        finally:
            lock, users = self._local[key]
            if users <= 1:
                del self._local[key]
            else:
                self._local[key] = (lock, users - 1)
