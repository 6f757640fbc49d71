"""Leases against the real MongoDB-wire server: one holder per key across owners, fencing tokens, expiry on the
server's clock, release, ``hold()``'s wait and its exclusivity within one process."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from okta_bridge.stores.leases import LeaseBusyError, Leases
from okta_bridge.mongo import connect

pytestmark = pytest.mark.integration

MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
KEY = "group|https://acme.okta.com|0oaJIRA|00gSALES"
GENEROUS_S = 20.0  # an upper bound for waits that must end, far above what they should take


@pytest.fixture
async def db(mongo_db):
    client, database = connect(MONGODB_URL, mongo_db)
    yield database
    await client.close()


async def wait_for_token(leases: Leases, key: str, timeout_s: float = 10.0) -> int | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        token = await leases.try_acquire(key)
        if token is not None:
            return token
        await asyncio.sleep(0.1)
    return None


async def test_one_holder_at_a_time_and_renewal_keeps_the_token(db):
    a, b = Leases.keyed(db, owner="owner-a"), Leases.keyed(db, owner="owner-b")
    first = await a.try_acquire(KEY)
    assert first is not None
    assert await b.try_acquire(KEY) is None  # busy
    assert await a.try_acquire(KEY) == first  # the same owner renews: same token
    assert await b.try_acquire(KEY) is None

    doc = await db.leases.find_one({"_id": KEY})
    assert doc["owner"] == "owner-a" and doc["token"] == first

    # another key is another lease
    assert await b.try_acquire(KEY + "-other") is not None
    assert await a.try_acquire(KEY + "-other") is None


async def test_release_frees_the_lease_for_the_other_owner(db):
    a, b = Leases.keyed(db, owner="owner-a"), Leases.keyed(db, owner="owner-b")
    assert await a.try_acquire(KEY) is not None
    await b.release(KEY)  # not the holder: no effect
    assert await b.try_acquire(KEY) is None
    await a.release(KEY)
    assert await b.try_acquire(KEY) is not None
    assert await a.try_acquire(KEY) is None


async def test_the_token_grows_when_the_holder_changes_through_a_release(db):
    a, b = Leases.keyed(db, owner="owner-a"), Leases.keyed(db, owner="owner-b")
    first = await a.try_acquire(KEY)
    await a.release(KEY)
    second = await b.try_acquire(KEY)
    assert second is not None and second > first  # a fencing token must never repeat for another holder


async def test_an_expired_lease_is_taken_by_the_other_owner_with_a_greater_token(db):
    a, b = Leases.keyed(db, owner="owner-a", ttl_s=1.0), Leases.keyed(db, owner="owner-b", ttl_s=1.0)
    first = await a.try_acquire(KEY)
    assert first is not None
    assert await b.try_acquire(KEY) is None  # not expired yet (1 s ttl)

    second = await wait_for_token(b, KEY)  # a stops renewing: the lease expires on the server's clock
    assert second is not None, "the lease of 1 s did not expire within 10 s"
    assert second > first
    assert await a.try_acquire(KEY) is None  # a lost it
    await a.release(KEY)  # a's late release does not free b's lease
    assert await b.try_acquire(KEY) == second  # b renews: token unchanged
    doc = await db.leases.find_one({"_id": KEY})
    assert doc["owner"] == "owner-b"

    third = await wait_for_token(a, KEY)  # and back again
    assert third is not None and third > second


async def test_hold_raises_lease_busy_after_its_wait(db):
    a, b = Leases.keyed(db, owner="owner-a"), Leases.keyed(db, owner="owner-b")
    held = await b.try_acquire(KEY)
    assert held is not None

    started = time.monotonic()
    with pytest.raises(LeaseBusyError):
        async with a.hold(KEY, wait_s=0.3):
            pytest.fail("entered a lease another owner holds")
    assert 0.3 <= time.monotonic() - started < GENEROUS_S
    assert await b.try_acquire(KEY) == held  # b still holds it, untouched by a's attempt

    # once b releases, a's next hold gets it (the local lock was not left taken)
    await b.release(KEY)
    async with a.hold(KEY, wait_s=5.0) as token:
        assert isinstance(token, int)
        assert (await db.leases.find_one({"_id": KEY}))["owner"] == "owner-a"
        assert await b.try_acquire(KEY) is None
    assert await b.try_acquire(KEY) is not None  # released on leaving


async def test_hold_waits_for_a_release_by_the_other_owner(db):
    a, b = Leases.keyed(db, owner="owner-a"), Leases.keyed(db, owner="owner-b")
    assert await b.try_acquire(KEY) is not None

    async def release_soon() -> None:
        await asyncio.sleep(0.3)
        await b.release(KEY)

    releaser = asyncio.create_task(release_soon())
    async with a.hold(KEY, wait_s=GENEROUS_S):
        assert releaser.done()
        assert (await db.leases.find_one({"_id": KEY}))["owner"] == "owner-a"
    await releaser


async def test_hold_releases_when_the_body_raises(db):
    a, b = Leases.keyed(db, owner="owner-a"), Leases.keyed(db, owner="owner-b")
    with pytest.raises(RuntimeError, match="boom"):
        async with a.hold(KEY):
            raise RuntimeError("boom")
    assert await b.try_acquire(KEY) is not None


async def test_concurrent_holds_in_one_process_run_one_at_a_time(db):
    leases = Leases.keyed(db, owner="owner-a")
    inside, peak, done = 0, 0, 0

    async def work(i: int) -> None:
        nonlocal inside, peak, done
        async with leases.hold(KEY, wait_s=GENEROUS_S):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1
            done += 1

    await asyncio.wait_for(asyncio.gather(*(work(i) for i in range(12))), timeout=60)
    assert (peak, done) == (1, 12)
    assert await Leases.keyed(db, owner="owner-b").try_acquire(KEY) is not None  # the last one released it


async def test_concurrent_holds_of_two_owners_run_one_at_a_time(db):
    owners = [Leases.keyed(db, owner="owner-a"), Leases.keyed(db, owner="owner-b")]
    inside, peak, done = 0, 0, 0
    holders: list[str] = []

    async def work(leases: Leases) -> None:
        nonlocal inside, peak, done
        async with leases.hold(KEY, wait_s=60):
            inside += 1
            peak = max(peak, inside)
            holders.append(leases.owner)
            await asyncio.sleep(0.02)
            inside -= 1
            done += 1

    await asyncio.wait_for(asyncio.gather(*(work(owners[i % 2]) for i in range(8))), timeout=120)
    assert (peak, done) == (1, 8)
    assert sorted(set(holders)) == ["owner-a", "owner-b"]
