"""Permits shared across processes: an app's ``max_concurrency`` whatever the number of dispatcher replicas, and the
Okta org's concurrent requests across every replica of every service.

Each process (a *holder*) keeps a lease on the permits it holds, in one document per scope
(:mod:`okta_bridge.stores.permits`), renewed every few seconds with its *want* per resource (requests in flight plus
waiting). At each renewal the holder computes everyone's fair target (:func:`targets`) and moves its own holding
towards it:

* **up** only into permits nobody live holds (``limit`` minus the sum of live holdings), so the sum of live holdings
  never exceeds the limit;
* **down** only as far as its requests in flight allow (it gives back idle permits, never one in use), and it starts
  no new request past its target meanwhile: a permit in use goes back when its request ends, and the holder renews
  then, so a steady backlog on one replica cannot keep a permit the rotation gave to another.

A holder's permits lapse with its registration (the holder stops using them at a local deadline before that, timed
on its own monotonic clock, ``margin`` longer than any request's timeout, so no request of a dead or paused holder is
still running when others take its permits). When the wants exceed the limit, the order in which :func:`targets`
hands out permits rotates every ``rotation_s``, so a holder with work never waits forever: no app starves, whatever
the number of replicas. A holder that needs permits it does not have renews at once instead of at its next turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import AsyncIterator, Callable

from okta_bridge.partitions import RENEW_MAX_S
from okta_bridge.stores.permits import Holding, MongoPermits

__all__ = ["PermitPool", "Slots", "okta_budget", "targets"]

log = logging.getLogger(__name__)


def targets(limit: int, held: dict[str, int], want: dict[str, int], epoch: int) -> dict[str, int]:
    """Each holder's fair share: ``limit`` handed out one permit at a time over the holders that want more, in an
    order that rotates with ``epoch``; permits nobody wants stay with those holding them."""
    names = sorted(set(held) | set(want))
    if not names:
        return {}
    start = epoch % len(names)
    order = names[start:] + names[:start]
    out = {n: 0 for n in names}
    left = limit
    while left > 0:
        given = False
        for n in order:
            if left and out[n] < want.get(n, 0):
                out[n] += 1
                left -= 1
                given = True
        if not given:
            break
    for n in order:  # unwanted permits stay where they are
        keep = min(max(held.get(n, 0) - out[n], 0), left)
        out[n] += keep
        left -= keep
    return out


@dataclass(eq=False)
class Slots:
    """A process's own in-flight limit (``DISPATCHER_MAX_IN_FLIGHT``), taken together with a permit by
    :meth:`PermitPool.slot`, or alone by :meth:`hold`."""

    limit: int
    used: int = 0
    pools: list["PermitPool"] = field(default_factory=list)  # the pools whose requests take these slots

    def __post_init__(self) -> None:
        self._cond = asyncio.Condition()

    async def freed(self, by: "PermitPool", resource: str) -> None:
        """A slot came free: a waiter of every pool sharing the slots may take it (the engines of all of a
        replica's pools share one in-flight limit), not only the pool whose request ended."""
        for pool in self.pools:
            await pool._slot_freed(resource if pool is by else None)

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: self.used < self.limit)
            self.used += 1
        try:
            yield
        finally:
            async with self._cond:
                self.used -= 1
                self._cond.notify(1)


@dataclass
class PermitPool:
    store: MongoPermits
    scope: str  # one document: "apps|<pool>" or "okta"
    me: str
    limits: dict[str, int]
    ttl_s: float
    margin_s: float  # longer than any request's timeout
    rotation_s: float = 10.0
    monotonic: Callable[[], float] = time.monotonic
    held: dict[str, int] = field(default_factory=dict)
    in_use: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    allowed: dict[str, int] = field(default_factory=dict)  # what new requests may use: held, or less on the way down
    deadline: float = 0.0

    def __post_init__(self) -> None:
        for r in self.limits:
            self.held.setdefault(r, 0)
            self.in_use.setdefault(r, 0)
            self.waiting.setdefault(r, 0)
            self.allowed.setdefault(r, self.held[r])
        self._conds = {r: asyncio.Condition() for r in self.limits}  # one per resource: a release wakes one waiter
        self._wake = asyncio.Event()
        self._turn = 0

    @property
    def renew_s(self) -> float:
        return min(RENEW_MAX_S, max(0.2, (self.ttl_s - self.margin_s) / 3))

    def usable(self, resource: str) -> int:
        return min(self.held[resource], self.allowed[resource]) if self.monotonic() < self.deadline else 0

    @asynccontextmanager
    async def slot(self, resource: str, local: Slots | None = None,
                   check: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """One permit of ``resource`` for the duration of one request; with ``local``, one of the process's own
        slots too, both taken at once: a request never holds one while it waits for the other (a permit held by a
        request that waits for a slot would be idle here and missing at the other replicas; a slot held while
        waiting for a permit would be missing for the other resources). A waiting request counts in this holder's
        *want* either way. ``check`` runs before the wait and at least once a second while waiting: what it raises
        ends the wait (say, the work's partition was handed over meanwhile)."""
        cond = self._conds[resource]
        if local is not None and not any(p is self for p in local.pools):
            local.pools.append(self)
        async with cond:
            self.waiting[resource] += 1
            try:
                while True:
                    if check is not None:
                        try:
                            check()
                        except BaseException:
                            cond.notify(1)  # a wake meant for us goes to the next waiter
                            raise
                    starved = self.in_use[resource] >= self.usable(resource)
                    if not starved and (local is None or local.used < local.limit):
                        break
                    if starved and self.held[resource] < self.limits[resource]:
                        self._wake.set()  # more may be free (or others may give some back): renew soon
                    try:  # asyncio.timeout, not wait_for: a cancellation that meets a wake is never swallowed
                        async with asyncio.timeout(1.0):
                            await cond.wait()
                    except TimeoutError:
                        pass
            finally:
                self.waiting[resource] -= 1
            self.in_use[resource] += 1
            if local is not None:
                local.used += 1
        try:
            yield
        finally:
            async with cond:
                self.in_use[resource] -= 1
                cond.notify(1)  # one permit (and slot) came free: one waiter can use it
                if self.allowed[resource] < self.held[resource]:
                    self._wake.set()  # on its way down: give the permit back now, not at the next turn
            if local is not None:
                local.used -= 1
                await local.freed(self, resource)

    async def _slot_freed(self, freed: str | None) -> None:
        """A process slot came free: one waiter of every other resource that has waiters is woken, starting from a
        different resource each time, and the first that also has a permit takes it (``freed`` None: the slot was
        freed by another pool's request, every resource is another)."""
        names = [r for r in self.limits if r != freed and self.waiting[r]]
        if not names:
            return
        self._turn = (self._turn + 1) % len(names)
        for r in names[self._turn:] + names[:self._turn]:
            async with self._conds[r]:
                self._conds[r].notify(1)

    async def run(self, stop: asyncio.Event) -> None:
        """Renews until ``stop``, then gives every permit back."""
        while not stop.is_set():
            self._wake.clear()  # before the renewal: a wake set while it runs (a permit freed) renews again soon
            try:
                await asyncio.wait_for(self.renew(), max(self.renew_s * 2, 5.0))
            except Exception as exc:  # noqa: BLE001 - the database is away: the deadline lapses, nothing is used
                log.warning("permits %s: renewal failed: %s", self.scope, exc)
            waited = asyncio.ensure_future(self._wake.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait((waited, stopped), timeout=self.renew_s, return_when=asyncio.FIRST_COMPLETED)
            waited.cancel()
            stopped.cancel()
            if self._wake.is_set():
                await asyncio.sleep(min(1.0, self.renew_s / 2))  # a burst of demand makes one renewal, not many
        await self.leave()

    async def renew(self, leaving: bool = False) -> bool:
        started = self.monotonic()
        for _ in range(5):  # another holder wrote in between: read again
            ledger = await self.store.read(self.scope)
            now = ledger.now
            live = {n: h for n, h in ledger.holders.items() if h.expires > now and n != self.me}
            mine = ledger.holders.get(self.me)
            held_now = mine.held if mine and mine.expires > now else {}
            want = {r: 0 if leaving else min(self.in_use[r] + self.waiting[r], limit)
                    for r, limit in self.limits.items()}
            epoch = int(now.timestamp() // self.rotation_s)
            new, allowed = {}, {}
            for r, limit in self.limits.items():
                held_by = {n: h.held.get(r, 0) for n, h in live.items()}
                held_by[self.me] = held_now.get(r, 0)
                want_by = {n: h.want.get(r, 0) for n, h in live.items()}
                want_by[self.me] = want[r]
                target = targets(limit, held_by, want_by, epoch)[self.me]
                current = held_by[self.me]
                if target > current:
                    new[r] = allowed[r] = min(target, current + max(0, limit - sum(held_by.values())))
                else:  # the permits in use stay held until their requests end; no new one starts past the target
                    new[r] = max(target, min(self.in_use[r], current))
                    allowed[r] = target
            ledger.holders = dict(live)
            if not leaving or any(self.in_use.values()):
                ledger.holders[self.me] = Holding(now + timedelta(seconds=self.ttl_s), new, want)
            if await self.store.write(ledger):
                self.held = {r: new.get(r, 0) for r in self.limits}
                self.allowed = {r: allowed.get(r, 0) for r in self.limits}
                self.deadline = started + self.ttl_s - self.margin_s
                for cond in self._conds.values():
                    async with cond:
                        cond.notify_all()
                return True
        return False

    async def leave(self) -> None:
        """Shutting down: the permits go back as soon as the requests in flight end (at most a few seconds)."""
        for _ in range(50):
            if not any(self.in_use.values()):
                break
            await asyncio.sleep(0.1)
        try:
            await self.renew(leaving=True)
        except Exception as exc:  # noqa: BLE001 - they lapse on their own after the TTL
            log.warning("permits %s: giving them back failed: %s", self.scope, exc)


def okta_budget(store: MongoPermits, me: str, max_concurrent: int, request_timeout_s: float) -> PermitPool:
    """The org-wide budget of concurrent Okta requests (``OKTA_MAX_CONCURRENT_REQUESTS``), shared by every replica
    of every service that calls Okta."""
    margin = request_timeout_s + 2
    return PermitPool(store, "okta", me, {"requests": max_concurrent}, ttl_s=margin + 9, margin_s=margin)
