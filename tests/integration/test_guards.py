"""The deactivation guard's store against the real MongoDB-wire server: one shared count per app across replicas
(concurrent takes never let more through than the threshold), held keys, release and discard."""

from __future__ import annotations

import asyncio
import os

import pytest

from okta_bridge.mongo import connect
from okta_bridge.stores.assignments import MongoAssignments
from okta_bridge.stores.guards import Held, MongoGuards

pytestmark = pytest.mark.integration

MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
ORG, APP = "https://acme.okta.com", "0oa1jiraxxxxxxxxxxxx"


@pytest.fixture
async def db(mongo_db):
    client, database = connect(MONGODB_URL, mongo_db)
    yield database
    await client.close()


async def test_replicas_share_one_count_and_never_send_more_than_the_threshold(db):
    replicas = [MongoGuards(db, ORG) for _ in range(4)]
    takes = await asyncio.gather(*(g.take(APP, 3, 10, 3600) for g in replicas for _ in range(3)))
    assert sum(t.allowed for t in takes) == 10
    assert [s.paused for s in await replicas[0].states()] == [True]


async def test_a_share_is_of_the_assigned_users(db):
    assignments = MongoAssignments(db, ORG)
    await assignments.record_listing(APP, [(f"00u{n:x<17}", None) for n in range(20)], "s1", 1)
    take = await MongoGuards(db, ORG, assignments.count_assigned).take(APP, 5, "10%", 3600)
    assert (take.limit, take.allowed, take.paused) == (2, 2, True)


async def test_release_marks_keys_released_and_unpauses_when_nothing_is_held(db):
    g = MongoGuards(db, ORG)
    await g.take(APP, 3, 1, 3600)
    users = [f"00u{n:x<17}" for n in range(2)]
    await g.hold([Held(APP, u, 4, "sync:initial") for u in users])
    assert await g.is_set(APP)
    assert [h.user_id for h in await g.release(APP, users[:1], "ops")] == users[:1]
    assert (await g.states())[0].paused and (await g.states())[0].held == 1
    assert await g.released([(APP, u) for u in users]) == {(APP, users[0])}
    assert [h.user_id for h in await g.discard(APP, None, "ops")] == users[1:]
    [state] = await g.states()
    assert (state.paused, state.count, state.held) == (False, 0, 0)
    await g.forget({(APP, users[0])})
    assert await g.released([(APP, users[0])]) == set() and not await g.is_set(APP)
