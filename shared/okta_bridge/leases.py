"""Leases in MongoDB: at most one holder of a key across processes, expiring on the database server's clock.

A lease is one document ``{_id: key, owner, expires, token}``. Taking it is one ``find_one_and_update`` with an
update pipeline: it matches when the lease is free, expired (``expires < $$NOW``, the server's time, so clocks of
the hosts do not matter) or already ours, and sets ``expires = $$NOW + ttl``. When someone else holds it, the upsert
collides on ``_id`` (``DuplicateKeyError``): busy. ``token`` grows on each change of holder; a holder passes it
with its writes where a fencing check is needed. A holder that dies leaves the lease to expire.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
from contextlib import asynccontextmanager
from typing import AsyncIterator

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

__all__ = ["LeaseBusyError", "Leases"]


class LeaseBusyError(RuntimeError):
    """Another process holds the lease for longer than we were willing to wait (a transient condition)."""


class Leases:
    def __init__(self, collection: AsyncCollection, owner: str | None = None, ttl_s: float = 60.0) -> None:
        self._coll = collection
        self.owner = owner or f"{socket.gethostname()}:{secrets.token_hex(4)}"
        self._ttl_ms = int(ttl_s * 1000)
        self._local: dict[str, asyncio.Lock] = {}  # one per key seen (pushed groups: a few thousand at most)

    async def try_acquire(self, key: str) -> int | None:
        """The fencing token when the lease is now ours (taken or renewed), else None."""
        free = {"$or": [{"owner": self.owner}, {"$expr": {"$lt": ["$expires", "$$NOW"]}}]}
        taking = {"$ne": ["$owner", self.owner]}
        try:
            doc = await self._coll.find_one_and_update(
                {"_id": key, **free},
                [{"$set": {"token": {"$cond": [taking, {"$add": [{"$ifNull": ["$token", 0]}, 1]}, "$token"]},
                           "owner": self.owner, "expires": {"$add": ["$$NOW", self._ttl_ms]}}}],
                upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            return None
        return int(doc["token"])

    async def release(self, key: str) -> None:
        await self._coll.delete_one({"_id": key, "owner": self.owner})

    @asynccontextmanager
    async def hold(self, key: str, wait_s: float = 15.0) -> AsyncIterator[int]:
        """Exclusive across processes (the lease) and within this one (a lock, so only one task asks the database).
        Raises :class:`LeaseBusyError` after ``wait_s``; the caller retries later."""
        lock = self._local.setdefault(key, asyncio.Lock())
        async with lock:
            loop = asyncio.get_running_loop()
            deadline, delay = loop.time() + wait_s, 0.02
            while (token := await self.try_acquire(key)) is None:
                if loop.time() >= deadline:
                    raise LeaseBusyError(f"lease {key.split('|')[0]} held by another process")
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)
            try:
                yield token
            finally:
                await self.release(key)
