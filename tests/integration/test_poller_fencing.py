"""The poller's cursor writes are fenced by its lease token (real MongoDB): a poller that lost the lease can no
longer move the cursor, the new leader can."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from okta_bridge.stores.leases import Leases
from okta_bridge.mongo import connect
from okta_bridge.stores.cursor import MongoPollerState
from queue_poller.ports import CursorState, LeadershipLost

pytestmark = pytest.mark.integration

MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
ORG = "https://acme.okta.com"


@pytest.fixture
async def db(mongo_db):
    client, database = connect(MONGODB_URL, mongo_db)
    yield database
    await client.close()


def cursor(link: str) -> CursorState:
    return CursorState(link, datetime.now(UTC), ["0oaJIRA"])


async def test_a_deposed_leader_cannot_move_the_cursor(db):
    old, new = MongoPollerState(db, ORG), MongoPollerState(db, ORG)
    a, b = Leases.keyed(db, owner="poller-a", ttl_s=30), Leases.keyed(db, owner="poller-b", ttl_s=30)
    old.fence = await a.try_acquire("poller")
    await old.save(cursor("link-1"))
    await a.release("poller")  # (or its lease expired while it was paused)
    new.fence = await b.try_acquire("poller")
    assert new.fence > old.fence
    await new.save(cursor("link-2"))

    with pytest.raises(LeadershipLost):
        await old.save(cursor("stale-link"))
    assert (await new.load()).next_link == "link-2"
    await new.save(cursor("link-3"))  # the leader keeps writing
    assert (await old.load()).next_link == "link-3"


async def test_an_unfenced_cursor_is_taken_over(db):
    legacy, leader = MongoPollerState(db, ORG), MongoPollerState(db, ORG)
    await legacy.save(cursor("from-before-leases"))
    leader.fence = 1
    await leader.save(cursor("link-1"))
    assert (await leader.load()).next_link == "link-1"
