"""The fair-share arithmetic of shared permits (:func:`okta_bridge.permits.targets`) and a pool of holders driven
over an in-memory ledger: the limit is never exceeded, idle permits move to whoever wants them, nobody starves."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta

import pytest

from okta_bridge.permits import PermitPool, Slots, targets
from okta_bridge.stores.permits import Ledger


@pytest.mark.parametrize(
    ("limit", "held", "want", "epoch", "expected"),
    [
        # everyone gets what they want while the wants fit
        (8, {}, {"a": 3, "b": 2}, 0, {"a": 3, "b": 2}),
        # wants beyond the limit: an even split
        (8, {}, {"a": 10, "b": 10}, 0, {"a": 4, "b": 4}),
        # a small want is met in full, the rest goes to the big one
        (8, {}, {"a": 1, "b": 10}, 0, {"a": 1, "b": 7}),
        # an odd permit goes to whoever comes first in this epoch's order, and rotates
        (3, {}, {"a": 5, "b": 5}, 0, {"a": 2, "b": 1}),
        (3, {}, {"a": 5, "b": 5}, 1, {"a": 1, "b": 2}),
        # more holders than permits: each epoch serves different ones, so over time everyone is served
        (1, {}, {"a": 1, "b": 1, "c": 1}, 0, {"a": 1, "b": 0, "c": 0}),
        (1, {}, {"a": 1, "b": 1, "c": 1}, 1, {"a": 0, "b": 1, "c": 0}),
        (1, {}, {"a": 1, "b": 1, "c": 1}, 2, {"a": 0, "b": 0, "c": 1}),
        # permits nobody wants stay where they are (no churn while idle) ...
        (8, {"a": 6, "b": 2}, {"a": 0, "b": 0}, 0, {"a": 6, "b": 2}),
        # ... until somebody wants them
        (8, {"a": 6, "b": 2}, {"a": 0, "b": 8}, 0, {"a": 0, "b": 8}),
        (8, {"a": 6, "b": 2}, {"a": 2, "b": 8}, 0, {"a": 2, "b": 6}),
    ],
)
def test_targets(limit, held, want, epoch, expected):
    assert targets(limit, held, want, epoch) == expected


@pytest.mark.parametrize("epoch", range(5))
def test_targets_never_exceed_the_limit(epoch):
    import random

    rnd = random.Random(epoch)
    for _ in range(500):
        names = [f"h{i}" for i in range(rnd.randint(1, 6))]
        limit = rnd.randint(1, 12)
        held = {n: rnd.randint(0, 4) for n in names}
        want = {n: rnd.randint(0, 10) for n in names}
        out = targets(limit, held, want, epoch)
        assert sum(out.values()) <= max(limit, 0)
        assert all(v >= 0 for v in out.values())
        # nobody who wants permits gets none while another holds more than its fair share
        if sum(want.values()) >= limit >= len([n for n in names if want[n]]):
            assert all(out[n] >= 1 for n in names if want[n])


class MemoryPermits:
    """The ledger's compare-and-set on ``rev``, in memory; ``clock`` is the database's time."""

    def __init__(self) -> None:
        self.ledgers: dict[str, Ledger] = {}
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)

    async def read(self, scope: str) -> Ledger:
        await asyncio.sleep(0)
        ledger = self.ledgers.setdefault(scope, Ledger(scope, 0, self.clock))
        out = copy.deepcopy(ledger)
        out.now = self.clock
        return out

    async def write(self, ledger: Ledger) -> bool:
        await asyncio.sleep(0)
        current = self.ledgers[ledger.scope]
        if current.rev != ledger.rev:
            return False
        stored = copy.deepcopy(ledger)
        stored.rev += 1
        self.ledgers[ledger.scope] = stored
        return True


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def pool(store, name: str, limit: int, clock: Clock) -> PermitPool:
    return PermitPool(store, "apps|default", name, {"app": limit}, ttl_s=30, margin_s=10, monotonic=clock)


async def test_holders_share_the_limit_and_hand_idle_permits_over():
    store, clock = MemoryPermits(), Clock()
    a, b = pool(store, "a", 4, clock), pool(store, "b", 4, clock)
    a.waiting["app"] = 10  # a alone wants permits: it gets them all
    await a.renew()
    await b.renew()
    assert (a.held["app"], b.held["app"]) == (4, 0)
    b.waiting["app"] = 10  # b wants some too: a gives back what it does not use, b takes it at its next renewal
    await b.renew()
    assert b.held["app"] == 0  # nothing free yet: it never takes permits someone live holds
    a.in_use["app"], a.waiting["app"] = 1, 9
    await a.renew()
    assert a.held["app"] == 2
    await b.renew()
    assert b.held["app"] == 2
    assert a.held["app"] + b.held["app"] <= 4


async def test_a_holder_keeps_the_permits_in_use():
    store, clock = MemoryPermits(), Clock()
    a, b = pool(store, "a", 4, clock), pool(store, "b", 4, clock)
    a.waiting["app"] = 4
    await a.renew()
    a.in_use["app"], a.waiting["app"] = 4, 0  # all four in flight
    b.waiting["app"] = 4
    await b.renew()
    await a.renew()  # its target is 2, but it never gives back a permit in use ...
    assert a.held["app"] == 4
    await b.renew()
    assert b.held["app"] == 0
    assert a.usable("app") == 2  # ... and starts no new request past its target meanwhile
    a.in_use["app"] = 2  # two of its requests ended
    await a.renew()
    await b.renew()
    assert (a.held["app"], b.held["app"]) == (2, 2)


async def test_a_lapsed_holder_frees_its_permits_and_stops_using_them():
    store, clock = MemoryPermits(), Clock()
    a, b = pool(store, "a", 3, clock), pool(store, "b", 3, clock)
    a.waiting["app"] = 3
    await a.renew()
    assert a.usable("app") == 3
    clock.t += 20.5  # past ttl - margin on its own clock: it uses none of them any more
    assert a.usable("app") == 0
    store.clock += timedelta(seconds=31)  # and the database sees its registration expired
    b.waiting["app"] = 3
    await b.renew()
    assert b.held["app"] == 3


async def test_slots_never_exceed_the_limit_and_nobody_starves():
    """Three holders, one permit, each with work queued: every holder is served within a few rotations, and at no
    moment do two requests hold the one permit."""
    store, clock = MemoryPermits(), Clock()
    holders = [PermitPool(store, "okta", n, {"r": 1}, ttl_s=30, margin_s=10, rotation_s=10, monotonic=clock)
               for n in "abc"]
    served = {h.me: 0 for h in holders}
    running = 0
    peak = 0

    async def work(h: PermitPool) -> None:
        nonlocal running, peak
        async with h.slot("r"):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            served[h.me] += 1
            running -= 1

    tasks = [asyncio.create_task(work(h)) for h in holders for _ in range(3)]
    for step in range(30):  # renewals in turn; the ledger's epoch moves on every 10 s of database time
        await asyncio.sleep(0.01)
        for h in holders:
            await h.renew()
        store.clock += timedelta(seconds=5)
        clock.t += 0.1
        if all(t.done() for t in tasks):
            break
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert peak == 1
    assert served == {"a": 3, "b": 3, "c": 3}


async def test_a_steady_backlog_on_one_holder_does_not_keep_the_one_permit_from_another():
    """One permit, holder a with a backlog that never runs dry while b waits with one request: once the rotation
    gives b the permit, a starts nothing new, gives it back when its request ends, and b is served while a still has
    work queued (before, a re-took the permit each time its request ended, and b waited for a's backlog to end)."""
    store, clock = MemoryPermits(), Clock()
    a, b = [PermitPool(store, "apps|default", n, {"app": 1}, ttl_s=30, margin_s=10, rotation_s=10, monotonic=clock)
            for n in "ab"]
    done: list[str] = []

    async def work(h: PermitPool, name: str) -> None:
        async with h.slot("app"):
            await asyncio.sleep(0.03)  # longer than the renewals' gap: a request is in flight at each renewal
            done.append(name)

    a_tasks = [asyncio.create_task(work(a, f"a{i}")) for i in range(400)]
    await asyncio.sleep(0)
    await a.renew()
    b_task = asyncio.create_task(work(b, "b"))
    try:
        for _ in range(40):  # renewals in turn; the epoch (whose turn it is) moves on every 10 s of database time
            await asyncio.sleep(0.02)
            for h in (a, b):
                await h.renew()
            store.clock += timedelta(seconds=5)
            if b_task.done():
                break
        assert b_task.done() and not all(t.done() for t in a_tasks), done  # b served while a's backlog still ran
    finally:
        for t in [*a_tasks, b_task]:
            t.cancel()
        await asyncio.gather(*a_tasks, b_task, return_exceptions=True)


async def test_a_request_waiting_for_a_process_slot_holds_no_permit_and_gives_the_idle_ones_back():
    """Two apps, 4 permits each, one process slot. While one request runs, the others wait for the slot without
    holding their app's permit: the holder's *in use* stays at what runs, so a renewal gives the rest back to another
    replica that wants them; the waiters still count in the holder's want. A freed slot goes to the other app's
    waiter when this app has none left."""
    from okta_bridge.permits import Slots

    store, clock = MemoryPermits(), Clock()
    a = PermitPool(store, "apps|default", "a", {"x": 4, "y": 4}, ttl_s=30, margin_s=10, monotonic=clock)
    a.waiting.update(x=4, y=4)
    await a.renew()
    a.waiting.update(x=0, y=0)
    assert a.held == {"x": 4, "y": 4}
    slots = Slots(1)
    release = asyncio.Event()
    order: list[str] = []

    async def request(app: str) -> None:
        async with a.slot(app, slots):
            order.append(app)
            assert slots.used == 1
            await release.wait()

    tasks = [asyncio.create_task(request("x"))]
    await asyncio.sleep(0.01)
    tasks += [asyncio.create_task(request(app)) for app in ("x", "x", "y")]
    await asyncio.sleep(0.01)
    assert order == ["x"]
    assert a.in_use == {"x": 1, "y": 0} and a.waiting == {"x": 2, "y": 1}
    b = PermitPool(store, "apps|default", "b", {"x": 4, "y": 4}, ttl_s=30, margin_s=10, monotonic=clock)
    b.waiting.update(x=4, y=4)
    await b.renew()  # records b's want
    await a.renew()  # fair shares of x (a wants 3, b 4) and y (a 1, b 4): a keeps what runs, gives the rest back
    await b.renew()
    assert a.held == {"x": 2, "y": 1} and b.held == {"x": 2, "y": 3}
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert sorted(order) == ["x", "x", "x", "y"] and slots.used == 0 and a.in_use == {"x": 0, "y": 0}


async def test_a_freed_slot_reaches_the_other_app_when_this_one_has_no_permit_left():
    from okta_bridge.permits import Slots

    store, clock = MemoryPermits(), Clock()
    a = PermitPool(store, "apps|default", "a", {"x": 1, "y": 1}, ttl_s=30, margin_s=10, monotonic=clock)
    a.waiting.update(x=1, y=1)
    await a.renew()
    a.waiting.update(x=0, y=0)
    slots = Slots(1)
    gates = {app: asyncio.Event() for app in ("x1", "x2", "y")}
    order: list[str] = []

    async def request(name: str) -> None:
        async with a.slot(name[0], slots):
            order.append(name)
            await gates[name].wait()

    first = asyncio.create_task(request("x1"))
    await asyncio.sleep(0.01)
    rest = [asyncio.create_task(request("x2")), asyncio.create_task(request("y"))]
    await asyncio.sleep(0.01)
    gates["x1"].set()  # x's one permit and the slot come free together: x2 and y are both woken, either may run
    await asyncio.sleep(0.01)
    assert order[0] == "x1" and len(order) == 2
    for g in gates.values():
        g.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert sorted(order) == ["x1", "x2", "y"]


async def test_a_slot_freed_by_one_pool_wakes_a_waiter_of_another_pool_sharing_the_replicas_slots():
    """Two pools of one replica share its in-flight limit (one slot here): when pool a's request ends, pool b's
    request, which holds no slot but has a permit, is woken at once (not at its next periodic look, a second later,
    while pool a's own waiters take every freed slot)."""
    store, clock = MemoryPermits(), Clock()
    a = PermitPool(store, "apps|a", "r", {"app-a": 2}, ttl_s=30, margin_s=10, monotonic=clock)
    b = PermitPool(store, "apps|b", "r", {"app-b": 2}, ttl_s=30, margin_s=10, monotonic=clock)
    slots = Slots(1)
    for p, r in ((a, "app-a"), (b, "app-b")):
        p.waiting[r] = 1
        await p.renew()
        p.waiting[r] = 0
    release, started = asyncio.Event(), asyncio.Event()

    async def a_request() -> None:
        async with a.slot("app-a", slots):
            await release.wait()

    async def b_request() -> None:
        async with b.slot("app-b", slots):
            started.set()

    first = asyncio.create_task(a_request())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(b_request())
    await asyncio.sleep(0.01)
    assert not started.is_set()  # the one slot is a's
    release.set()
    await asyncio.wait_for(started.wait(), 0.5)  # well before b's own periodic look (1 s)
    await asyncio.gather(first, second)


async def test_a_check_that_raises_ends_the_wait_and_takes_nothing():
    """The dispatcher's partition check: a request waiting for a slot whose partition was handed over meanwhile
    stops waiting (within the second) with the check's exception, holding neither a permit nor a slot."""
    from okta_bridge.permits import Slots

    store, clock = MemoryPermits(), Clock()
    a = PermitPool(store, "apps|default", "a", {"x": 2}, ttl_s=30, margin_s=10, monotonic=clock)
    a.waiting["x"] = 2
    await a.renew()
    a.waiting["x"] = 0
    slots, release, handed_over = Slots(1), asyncio.Event(), False

    def check() -> None:
        if handed_over:
            raise LookupError("handed over")

    async def request() -> None:
        async with a.slot("x", slots, check):
            await release.wait()

    first = asyncio.create_task(request())
    await asyncio.sleep(0.01)
    second = asyncio.create_task(request())
    await asyncio.sleep(0.01)
    assert a.waiting["x"] == 1
    handed_over = True
    with pytest.raises(LookupError):
        await asyncio.wait_for(second, 2)
    assert a.waiting["x"] == 0 and a.in_use["x"] == 1 and slots.used == 1
    release.set()
    await first
    assert a.in_use["x"] == 0 and slots.used == 0
