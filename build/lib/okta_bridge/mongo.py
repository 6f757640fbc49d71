"""MongoDB access (``pymongo.AsyncMongoClient``) and the key scheme. Each collection has one owning adapter in
:mod:`okta_bridge.stores`; nothing else names a collection.
"""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from okta_bridge.metrics import CommandCounter

__all__ = ["connect", "key"]


def connect(url: str, db: str) -> tuple[AsyncMongoClient, AsyncDatabase]:
    # a write is acknowledged once it is journaled on a majority: what the bridge has acked (a message, a cursor,
    # a version) survives a database crash; an explicit option in the URL still wins
    client: AsyncMongoClient = AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=10_000,
                                                event_listeners=[CommandCounter()], **_durable_unless_set(url))
    return client, client[db]


def _durable_unless_set(url: str) -> dict:
    query = url.partition("?")[2].lower()
    return {} if "w=" in query or "journal=" in query else {"w": "majority", "journal": True}


def key(*parts: str) -> str:
    return "|".join(parts)
