"""Ownership of a pool's partitions by its dispatcher replicas: leases renewed every few seconds, shared out
evenly, handed over without a gap in which two replicas could write one key.

* **Share**: the live members (replicas whose registration has not expired) sorted by name; member ``i`` of ``n``
  should own ``count // n`` partitions, one more for the first ``count % n``. ``count`` is the ceiling for replicas:
  one beyond it owns nothing and stands by.
* **Taking**: only a partition whose lease expired or was released (``owner`` None) is taken, with its token plus one:
  a new owner always waits out the old lease.
* **Handing over**: an owner above its share (a replica joined) stops consuming the extra partitions, lets their
  work finish, and releases them at its next renewal; the newcomer takes them at its own next renewal.
* **Stopping before the lease can lapse**: each renewal gives the owner a local deadline on its own monotonic clock,
  ``t_read + ttl - margin`` where ``t_read`` is taken before the lease was read and ``margin`` is longer than any
  SCIM request's timeout: no write starts after it, so every write of an old owner has ended before its lease
  expires on the database's clock and anyone else can take it. A replica whose deadline passes without a renewal
  gives the partition up at once (and is told so by the database at its next renewal).
* **Shutting down** (SIGTERM): the member drains and releases every partition at once.

:func:`rebalance` is the pure decision; :class:`PartitionOwner` drives it against :mod:`okta_bridge.stores.partitions`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Awaitable, Callable, Protocol

from okta_bridge.stores.partitions import Lease, MongoPartitions, PoolState

__all__ = ["Ownership", "PartitionOwner", "Grant", "rebalance"]

log = logging.getLogger(__name__)

RENEW_MAX_S = 3.0  # renewals every few seconds: a joining replica gets its share within two of them


@dataclass(frozen=True)
class Grant:
    partition: int
    token: int


@dataclass
class Ownership:
    """What one renewal decided for this member."""
    state: PoolState  # to write (compare-and-set)
    taken: list[Grant] = field(default_factory=list)
    kept: list[Grant] = field(default_factory=list)  # held before and renewed (draining ones included)
    to_drain: list[int] = field(default_factory=list)  # above our share: stop consuming, then release
    released: list[int] = field(default_factory=list)


def rebalance(state: PoolState, me: str, ttl: timedelta, drained: set[int], leaving: bool = False,
              working: set[int] | None = None) -> Ownership:
    """Renew, take, drain or release, as this member's share says. ``drained``: partitions we stopped consuming
    whose work has ended: they are released now. ``leaving``: release what is drained, renew what still drains
    (``working``: the partitions this replica still works on), take nothing."""
    now = state.now
    members = {m: e for m, e in state.members.items() if e > now and m != me}
    if not leaving:
        members[me] = now + ttl
    ranked = sorted(members)
    leases = list(state.leases)
    mine = [p for p, x in enumerate(leases) if x.owner == me and x.expires > now]
    share = 0 if leaving else _share(state.count, ranked, me)
    out = Ownership(replace(state, members=members, leases=leases))
    extra = max(0, len(mine) - share)
    draining = sorted(mine, reverse=True)[:extra] if extra else []
    for p in mine:
        if p in drained and (p in draining or leaving):
            leases[p] = Lease(None, now, leases[p].token)
            out.released.append(p)
            continue
        if leaving and p not in (working or set()):  # stopped at its deadline (requests may still run there):
            continue  # neither released nor renewed, it lapses at its expiry
        leases[p] = Lease(me, now + ttl, leases[p].token)
        out.kept.append(Grant(p, leases[p].token))
        if p in draining:
            out.to_drain.append(p)
    if len(mine) < share:
        free = [p for p, x in enumerate(leases) if x.owner is None or x.expires <= now]
        index, n = ranked.index(me), len(ranked)
        preferred = sorted(free, key=lambda p: (p % n != index, p))  # a stable spread: member i favours p % n == i
        for p in preferred[:share - len(mine)]:
            token = leases[p].token + 1
            leases[p] = Lease(me, now + ttl, token)
            out.taken.append(Grant(p, token))
    return out


def _share(count: int, ranked: list[str], me: str) -> int:
    n, i = len(ranked), ranked.index(me)
    return count // n + (1 if i < count % n else 0)


class Holder(Protocol):
    """What the owner tells the dispatcher's engine."""

    def gained(self, partition: int, token: int, deadline: float) -> Awaitable[None]: ...
    def extended(self, partition: int, deadline: float) -> None: ...
    def drain(self, partition: int) -> Awaitable[None]: ...  # stop consuming, finish the work; returns when done
    def lost(self, partition: int) -> Awaitable[None]: ...  # the deadline passed or the lease is gone: stop now


@dataclass
class PartitionOwner:
    store: MongoPartitions
    pool: str
    me: str
    holder: Holder
    ttl_s: float
    margin_s: float  # longer than any SCIM request's timeout
    monotonic: Callable[[], float] = time.monotonic
    held: dict[int, float] = field(default_factory=dict)  # partition -> local deadline
    tokens: dict[int, int] = field(default_factory=dict)
    _drained: set[int] = field(default_factory=set)
    _draining: set[int] = field(default_factory=set)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def renew_s(self) -> float:
        """Every few seconds, and at least three renewals between one and its deadline."""
        return min(RENEW_MAX_S, max(0.2, (self.ttl_s - self.margin_s) / 3))

    async def run(self, stop: asyncio.Event) -> None:
        """Renews until ``stop``; then drains and releases everything (a clean shutdown frees its partitions at
        once instead of after the TTL)."""
        while not stop.is_set():
            # cleared before the round, not after: a wake set during it (a lost compare-and-set, a partition drained
            # meanwhile) starts the next round at once. Cleared after it, a replica that lost the compare-and-set
            # waited a whole renewal and lost again to the replica renewing in step with it: one that started at the
            # same moment as another lost every round for 24 s, and its partitions stopped at their local deadline
            self._wake.clear()
            try:  # a database that does not answer must not hold the loop: the deadlines lapse meanwhile
                await asyncio.wait_for(self._round(leaving=False), max(self.renew_s * 2, 5.0))
            except TimeoutError:
                log.warning("partition lease renewal timed out")
            try:
                await asyncio.wait_for(_first(stop, self._wake), self.renew_s)
            except TimeoutError:
                pass
        await self.leave()

    async def leave(self, within_s: float = 60.0) -> None:
        """Drains every partition at once (what runs finishes, what has not sent a request goes back to the queues,
        nothing new starts), renewing them meanwhile, and releases each as soon as it is drained."""
        drains = []
        for p in list(self.held):
            self._draining.add(p)
            drains.append(asyncio.get_running_loop().create_task(self._drain_then_wake(p)))
        give_up = self.monotonic() + within_s  # then the leases lapse on their own after the TTL
        while self.monotonic() < give_up:
            self._wake.clear()
            written = False
            try:
                written = await asyncio.wait_for(self._round(leaving=True), max(self.renew_s * 2, 5.0))
            except Exception as exc:  # noqa: BLE001
                log.warning("releasing partitions failed: %s", exc)
            if written and not self.held and all(t.done() for t in drains):
                return
            try:
                await asyncio.wait_for(self._wake.wait(), self.renew_s)
            except TimeoutError:
                pass

    async def _round(self, leaving: bool) -> bool:
        """One read-decide-write; True when written. A failure leaves the deadlines as they were (they lapse)."""
        await self._expire()
        before = set(self.held)  # what this replica still works on (a partition past its deadline is not)
        started = self.monotonic()
        try:
            state = await self.store.read(self.pool)
            decision = rebalance(state, self.me, timedelta(seconds=self.ttl_s), self._drained, leaving,
                                 working=before)
            if not await self.store.write(decision.state):
                # another replica wrote in between: again soon, after a pause of a random few ms, so that replicas
                # renewing in step (started together) fall out of step instead of colliding again
                await asyncio.sleep(random.uniform(0.0, min(0.1, self.renew_s / 10)))
                self._wake.set()
                return False
        except Exception as exc:  # noqa: BLE001 - the database is away: deadlines lapse, work stops by itself
            log.warning("partition lease renewal failed: %s", exc)
            return False
        deadline = started + self.ttl_s - self.margin_s
        for p in decision.released:
            self.held.pop(p, None)
            self.tokens.pop(p, None)
            self._drained.discard(p)
            self._draining.discard(p)
        still_mine = {g.partition for g in decision.kept} | {g.partition for g in decision.taken}
        for p in [p for p in self.held if p not in still_mine]:  # the database says it is not ours any more
            await self._lose(p)
        for grant in decision.kept:
            self.held[grant.partition] = deadline
            p = grant.partition
            self.tokens[p] = grant.token
            if p not in before:  # stopped when its deadline passed, yet still ours on the database's clock
                if p not in decision.to_drain:  # renewed now: work on it again
                    self._drained.discard(p)
                    self._draining.discard(p)
                    await self.holder.gained(p, grant.token, deadline)
                continue  # above our share: drained below, released once what ran there has ended
            if (p in self._drained or p in self._draining) and p not in decision.to_drain:
                self._drained.discard(p)  # our share grew back (a replica left) before it was released: resume
                self._draining.discard(p)
                await self.holder.gained(p, grant.token, deadline)
            else:
                self.holder.extended(p, deadline)
        for grant in decision.taken:
            self.held[grant.partition], self.tokens[grant.partition] = deadline, grant.token
            await self.holder.gained(grant.partition, grant.token, deadline)
        handing = [p for p in decision.to_drain if p not in self._draining and p not in self._drained]
        for p in handing:
            self._draining.add(p)
            asyncio.get_running_loop().create_task(self._drain_then_wake(p))
        if decision.taken or decision.released or handing:
            log.info("pool %s: took %s, handing over %s, released %s; %d partition(s) held", self.pool,
                     _ids(g.partition for g in decision.taken), _ids(handing), _ids(decision.released), len(self.held))
        return True

    async def _drain_then_wake(self, p: int) -> None:
        await self.holder.drain(p)
        if p in self._draining:  # not resumed meanwhile (our share grew back): release it now, not at the next renewal
            self._drained.add(p)
            self._wake.set()

    async def _expire(self) -> None:
        now = self.monotonic()
        for p in [p for p, deadline in self.held.items() if deadline <= now]:
            log.warning("partition %d of pool %s: no renewal before the local deadline; stopped", p, self.pool)
            await self._lose(p)

    async def _lose(self, p: int) -> None:
        self.held.pop(p, None)
        self.tokens.pop(p, None)
        self._drained.discard(p)
        self._draining.discard(p)
        await self.holder.lost(p)

    def owned(self) -> int:
        """Partitions this replica consumes now (held, within their deadline, not being handed over)."""
        return sum(1 for p in list(self.held) if self.owns(p) and p not in self._draining and p not in self._drained)

    def owns(self, p: int) -> bool:
        deadline = self.held.get(p)
        return deadline is not None and self.monotonic() < deadline


def _ids(partitions) -> str:
    return ",".join(str(p) for p in sorted(partitions)) or "-"


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()

