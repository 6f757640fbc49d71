"""Shared permits against the real MongoDB-wire server: two holders (as two dispatcher replicas) drive more requests
than an app's ``max_concurrency`` allows; at no moment are more in flight than the limit, both are served, and a
holder that leaves hands its permits over at once."""

from __future__ import annotations

import asyncio
import os

import pytest

from okta_bridge.mongo import connect
from okta_bridge.permits import PermitPool
from okta_bridge.stores.permits import MongoPermits

pytestmark = pytest.mark.integration

MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
ORG = "https://acme.okta.com"


@pytest.fixture
async def db(mongo_db):
    client, database = connect(MONGODB_URL, mongo_db)
    yield database
    await client.close()


async def test_two_replicas_never_exceed_an_apps_limit(db):
    store = MongoPermits(db, ORG)
    limit = 3
    pools = [PermitPool(store, "apps|default", f"replica-{i}", {"app": limit}, ttl_s=6, margin_s=2)
             for i in range(2)]
    stop = asyncio.Event()
    runners = [asyncio.create_task(p.run(stop)) for p in pools]
    in_flight, peak, served = 0, 0, {p.me: 0 for p in pools}

    async def request(p: PermitPool) -> None:
        nonlocal in_flight, peak
        async with p.slot("app"):
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            served[p.me] += 1

    try:
        await asyncio.wait_for(asyncio.gather(*(request(p) for p in pools for _ in range(40))), 60)
        assert peak <= limit
        assert served == {"replica-0": 40, "replica-1": 40}
        ledger = await store.read("apps|default")
        assert sum(h.held.get("app", 0) for h in ledger.holders.values()) <= limit

        # replica-0 leaves: its permits are given back at once, replica-1 may hold all of them
        leaving = pools[0]
        await leaving.leave()
        ledger = await store.read("apps|default")
        assert "replica-0" not in ledger.holders
        await asyncio.wait_for(asyncio.gather(*(request(pools[1]) for _ in range(12))), 30)
        assert pools[1].held["app"] == limit
    finally:
        stop.set()
        await asyncio.gather(*runners, return_exceptions=True)
    ledger = await store.read("apps|default")
    assert ledger.holders == {}


async def test_the_okta_budget_is_shared_by_services(db):
    """The org-wide budget: a translator and a poller each wanting more than the budget share it."""
    store = MongoPermits(db, ORG)
    pools = [PermitPool(store, "okta", name, {"requests": 4}, ttl_s=6, margin_s=2) for name in ("translator", "poller")]
    stop = asyncio.Event()
    runners = [asyncio.create_task(p.run(stop)) for p in pools]
    in_flight, peak = 0, 0

    async def call(p: PermitPool) -> None:
        nonlocal in_flight, peak
        async with p.slot("requests"):
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    try:
        await asyncio.wait_for(asyncio.gather(*(call(p) for p in pools for _ in range(30))), 60)
        assert 1 <= peak <= 4
    finally:
        stop.set()
        await asyncio.gather(*runners, return_exceptions=True)


async def test_more_holders_than_permits_each_with_a_backlog_are_all_served(db):
    """Three holders of one app whose ``max_concurrency`` is 1, each with a steady backlog (it always has requests
    waiting): the rotation hands the one permit round, so every holder is served while the others still have work
    queued (none starves behind a busier one), and never are two requests in flight at once, across holders."""
    store = MongoPermits(db, ORG)
    pools = [PermitPool(store, "apps|default", f"replica-{i}", {"app": 1}, ttl_s=3, margin_s=1, rotation_s=2)
             for i in range(3)]
    stop, done = asyncio.Event(), asyncio.Event()
    runners = [asyncio.create_task(p.run(stop)) for p in pools]
    in_flight, peak = 0, 0
    served: dict[str, int] = {p.me: 0 for p in pools}
    contended: dict[str, int] = {p.me: 0 for p in pools}  # served while every other holder had requests waiting
    ledger_peak = 0

    async def backlog(p: PermitPool) -> None:
        """One of a holder's request streams: the next request waits as soon as the last one ended."""
        nonlocal in_flight, peak
        while not done.is_set():
            async with p.slot("app"):
                in_flight += 1
                peak = max(peak, in_flight)
                served[p.me] += 1
                if all(o.waiting["app"] > 0 for o in pools if o is not p):
                    contended[p.me] += 1
                await asyncio.sleep(0.05)
                in_flight -= 1
            if all(n >= 2 for n in contended.values()):
                done.set()

    async def watch_ledger() -> None:
        """The live holdings written to the database never sum to more than the limit."""
        nonlocal ledger_peak
        while not done.is_set():
            ledger = await store.read("apps|default")
            live = [h for h in ledger.holders.values() if h.expires > ledger.now]
            ledger_peak = max(ledger_peak, sum(h.held.get("app", 0) for h in live))
            await asyncio.sleep(0.05)

    streams = [asyncio.create_task(backlog(p)) for p in pools for _ in range(3)]  # three streams per holder
    watcher = asyncio.create_task(watch_ledger())
    try:
        try:
            await asyncio.wait_for(done.wait(), 12)
        except TimeoutError:
            pass
        done.set()
        for t in streams:  # what still waits for the permit is given up (a cancelled wait takes nothing)
            t.cancel()
        await asyncio.wait_for(asyncio.gather(*streams, watcher, return_exceptions=True), 15)
        # every holder had its turns while the other two still wanted the permit: none starved
        assert all(n >= 2 for n in contended.values()), (contended, served)
        assert peak == 1, peak  # one permit: never two requests at once, whichever holders they belong to
        assert ledger_peak <= 1, ledger_peak
    finally:
        done.set()
        for t in (*streams, watcher):
            t.cancel()
        stop.set()
        await asyncio.gather(*runners, *streams, watcher, return_exceptions=True)
    ledger = await store.read("apps|default")
    assert ledger.holders == {}
