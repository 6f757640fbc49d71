"""Partition ownership against the real MongoDB-wire server: shares, hand-over without a gap, waiting out a lapsed
owner's lease, fencing tokens, release on shutdown, and the partition count that may not change under the state."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import pytest

from okta_bridge.mongo import connect
from okta_bridge.partitions import PartitionOwner, rebalance
from okta_bridge.stores.links import LinkWrite, MongoLinks
from okta_bridge.stores.partitions import MongoPartitions, PartitionCountChanged

pytestmark = pytest.mark.integration

MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
ORG = "https://acme.okta.com"
POOL = "default"


@pytest.fixture
async def db(mongo_db):
    client, database = connect(MONGODB_URL, mongo_db)
    yield database
    await client.close()


class Holder:
    """What an engine would do, recorded: partitions gained (with their tokens), drained and lost."""

    def __init__(self) -> None:
        self.owned: dict[int, int] = {}
        self.events: list[tuple[str, int]] = []

    async def gained(self, partition: int, token: int, deadline: float) -> None:
        self.owned[partition] = token
        self.events.append(("gained", partition))

    def extended(self, partition: int, deadline: float) -> None:
        pass

    async def drain(self, partition: int) -> None:
        self.owned.pop(partition, None)
        self.events.append(("drained", partition))

    async def lost(self, partition: int) -> None:
        self.owned.pop(partition, None)
        self.events.append(("lost", partition))


def owner(store, name: str, holder: Holder, ttl: float = 3.0, margin: float = 1.5) -> PartitionOwner:
    return PartitionOwner(store, POOL, name, holder, ttl_s=ttl, margin_s=margin)


async def until(check, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"{what} did not happen within {timeout}s"
        await asyncio.sleep(0.05)


async def test_the_partition_count_is_recorded_once_and_a_change_is_refused_with_a_clear_message(db):
    store = MongoPartitions(db, ORG)
    await store.claim_count(POOL, 8)
    await store.claim_count(POOL, 8)  # another service, the same count: fine
    with pytest.raises(PartitionCountChanged, match="has 8 partitions, but the connectors file says 16"):
        await store.claim_count(POOL, 16)
    state = await store.read(POOL)
    assert state.count == 8 and len(state.leases) == 8


async def test_a_lone_replica_owns_every_partition_and_a_second_one_gets_half_by_hand_over(db):
    store = MongoPartitions(db, ORG)
    await store.claim_count(POOL, 8)
    a_holder, b_holder = Holder(), Holder()
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    a = owner(store, "a", a_holder)
    task_a = asyncio.create_task(a.run(stop_a))
    await until(lambda: len(a_holder.owned) == 8, what="a owns all 8")
    b = owner(store, "b", b_holder)
    task_b = asyncio.create_task(b.run(stop_b))
    await until(lambda: len(a_holder.owned) == 4 and len(b_holder.owned) == 4, what="4 and 4")
    assert not set(a_holder.owned) & set(b_holder.owned)
    drained = {p for kind, p in a_holder.events if kind == "drained"}
    assert drained == set(b_holder.owned)  # a let go of exactly what b took, after draining it
    state = await store.read(POOL)
    for p, token in b_holder.owned.items():
        assert state.leases[p].owner == "b" and state.leases[p].token == token == 2  # a had token 1
    stop_b.set()  # b shuts down: its partitions are released at once and a takes them back
    await task_b
    await until(lambda: len(a_holder.owned) == 8, timeout=10, what="a owns all 8 again")
    stop_a.set()
    await task_a
    state = await store.read(POOL)
    assert all(x.owner is None for x in state.leases) and state.members == {}


async def test_a_replica_that_stops_renewing_loses_its_partitions_and_the_other_waits_out_its_lease(db):
    store = MongoPartitions(db, ORG)
    await store.claim_count(POOL, 2)
    a_holder, b_holder = Holder(), Holder()
    a = owner(store, "a", a_holder, ttl=3.0, margin=1.5)
    stop_a = asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    await until(lambda: len(a_holder.owned) == 2, what="a owns both")
    task_a.cancel()  # a hangs: no renewal, no release (as a SIGSTOP would)
    hung_at = asyncio.get_running_loop().time()
    deadline = max(a.held.values())
    b = owner(store, "b", b_holder, ttl=3.0, margin=1.5)
    stop_b = asyncio.Event()
    task_b = asyncio.create_task(b.run(stop_b))
    await until(lambda: len(b_holder.owned) == 2, what="b takes both")
    took_at = asyncio.get_running_loop().time()
    assert took_at >= deadline + 1.0, "b took a partition before a's local deadline plus the margin"
    assert took_at - hung_at >= 1.5, "b did not wait out a's lease"
    assert all(token == 2 for token in b_holder.owned.values())
    assert not a.owns(0) and not a.owns(1)  # a's own clock says it may not write any more
    stop_b.set()
    await task_b


async def test_a_partition_stopped_at_its_local_deadline_but_still_ours_is_worked_on_again_after_a_renewal(db):
    """A late renewal (a paused process, a slow database): the owner stops at its local deadline; when the next
    renewal finds the lease still its own on the database's clock, it works on the partition again (it must not
    keep renewing a lease it no longer consumes)."""
    store = MongoPartitions(db, ORG)
    await store.claim_count(POOL, 2)
    holder, clock = Holder(), [1000.0]
    a = PartitionOwner(store, POOL, "a", holder, ttl_s=30.0, margin_s=10.0, monotonic=lambda: clock[0])
    assert await a._round(leaving=False)
    assert sorted(holder.owned) == [0, 1]
    clock[0] += 25  # past the local deadline (renewal + 20 s); the database's lease (30 s) has not lapsed
    assert await a._round(leaving=False)
    assert holder.events[-4:] == [("lost", 0), ("lost", 1), ("gained", 0), ("gained", 1)]
    assert sorted(holder.owned) == [0, 1] and a.owns(0) and a.owns(1)
    state = await store.read(POOL)
    assert [x.token for x in state.leases] == [1, 1]  # the same leases, renewed: no new take


def test_rebalance_takes_only_free_or_expired_partitions_and_never_one_another_member_holds():
    from datetime import UTC, datetime
    from okta_bridge.stores.partitions import Lease, PoolState

    now = datetime(2026, 1, 1, tzinfo=UTC)
    live, lapsed = now + timedelta(seconds=5), now - timedelta(seconds=1)
    state = PoolState(POOL, 4, 0, now, {"a": live, "b": live},
                      [Lease("a", live, 3), Lease("a", live, 4), Lease("a", lapsed, 5), Lease(None, now, 6)])
    decision = rebalance(state, "b", timedelta(seconds=10), set())
    assert sorted(g.partition for g in decision.taken) == [2, 3]  # the lapsed and the free one
    assert {g.partition: g.token for g in decision.taken} == {2: 6, 3: 7}
    mine = rebalance(state, "a", timedelta(seconds=10), set())
    assert mine.to_drain == [] and sorted(g.partition for g in mine.kept) == [0, 1]


async def test_a_link_write_with_an_older_fencing_token_is_refused(db):
    links = MongoLinks(db, ORG)
    new_owner = LinkWrite("0oaA", "00u1", 5, "t-1", True, fence=7)
    old_owner = LinkWrite("0oaA", "00u1", 6, "t-old", True, fence=6)  # a newer version, but from a lapsed owner
    assert await links.save_many([new_owner]) == [True]
    assert await links.save_many([old_owner]) == [False]
    assert (await links.get("0oaA", "00u1")).target_id == "t-1"
    assert await links.save_many([LinkWrite("0oaA", "00u1", 6, "t-2", True, fence=7),
                                  LinkWrite("0oaA", "00u2", 1, "t-3", True, fence=7)]) == [True, True]
    # one stale write in a bulk: the others commit
    assert await links.save_many([LinkWrite("0oaA", "00u1", 2, "t-x", True, fence=7),
                                  LinkWrite("0oaA", "00u3", 1, "t-4", None, fence=7)]) == [False, True]
    assert (await links.get("0oaA", "00u3")).target_id == "t-4"


class _InStep(MongoPartitions):
    """Another replica renewing in step with this one: for the first ``times`` writes, it writes just before ours
    (after our read), so our compare-and-set fails each time."""

    def __init__(self, db, times: int) -> None:
        super().__init__(db, ORG)
        self.left, self.reads = times, 0

    async def read(self, pool):
        self.reads += 1
        return await super().read(pool)

    async def write(self, state) -> bool:
        if self.left:
            self.left -= 1
            await self._coll.update_one({"_id": self._id(state.pool)}, {"$inc": {"rev": 1}})
        return await super().write(state)


async def test_a_replica_that_loses_the_compare_and_set_to_one_renewing_in_step_tries_again_at_once(db):
    """A lost compare-and-set starts the next round at once (a few ms of jitter), not at the next renewal: two
    replicas started together renew in step, and the one that lost waited a whole renewal (3 s), lost again, and
    stopped its partitions at their local deadline (seen with 4 replicas in `make bench`)."""
    store = MongoPartitions(db, ORG)
    await store.claim_count(POOL, 8)
    in_step = _InStep(db, times=3)
    holder = Holder()
    stop = asyncio.Event()
    b = PartitionOwner(in_step, POOL, "b", holder, ttl_s=45.0, margin_s=21.0)
    assert b.renew_s == 3.0
    task = asyncio.create_task(b.run(stop))
    await until(lambda: len(holder.owned) == 8, timeout=b.renew_s - 0.5,
                what="the partitions taken before a renewal's wait (three rounds lost in a row)")
    assert in_step.reads == 4 and in_step.left == 0  # three lost rounds, each read again at once, then the take
    stop.set()
    await task
