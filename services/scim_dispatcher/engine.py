"""The dispatcher's engine: plans of the partitions this replica owns, applied concurrently across keys and in order
within a key, their database work done a batch at a time.

* **Intake.** Deliveries of the owned partitions' queues are parsed and queued per key (``app|user`` or
  ``app|group:<id>``); a key with work and none running is started.
* **Start** (batched): one ``find`` reads the links of every user key being started; each key runs as a task.
* **Run.** A key's queued plans run together: user plans coalesce to the newest version (the others are settled as
  superseded in the batch, each with its own audit record); group plans run in order, consecutive membership plans
  as one. Every SCIM request passes the gate: the partition's local deadline (no write starts after it), the
  replica's in-flight limit and the app's permits.
* **Complete** (batched): one bulk write stores the links of the applied user plans (version-checked, fenced by
  the partition's token); then the outcome policy settles each message (retry, hold and dead letter publishes are
  confirmed), one audit message goes out for the batch, and only then the deliveries are acknowledged. The key runs
  again if more of its plans arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from opentelemetry import context as otel_context
from pydantic import ValidationError

from okta_bridge.audit import AuditPublisher
from okta_bridge.bus import Batcher, Delivery
from okta_bridge.contracts import AuditStep, GroupPlanned, MembershipPlanned, Reason, ScimOperationPlanned
from okta_bridge.outcomes import Blocked, Done, Failure, failure_of, invalid_message, settle
from okta_bridge.redact import personal_values
from okta_bridge.permits import Slots
from okta_bridge.runtime import Republisher
from okta_bridge.settle import carry_out
from okta_bridge.stores.links import Link, LinkWriteError, MongoLinks
from okta_bridge.telemetry import ATTR
from okta_bridge.topology import key_of, partition_key
from scim_dispatcher.consume import PLAN_MESSAGES, DispatcherPorts, after_applied, done_fields, outcome_done, \
    plan_fields
from scim_dispatcher.groups import GroupOutcome
from scim_dispatcher.handlers import Outcome

__all__ = ["Engine", "EngineConfig", "OwnershipLost"]

log = logging.getLogger("scim_dispatcher")
SOURCE = "dispatcher"
Plan = ScimOperationPlanned | GroupPlanned | MembershipPlanned
_PARTITION: contextvars.ContextVar[int | None] = contextvars.ContextVar("partition", default=None)


class OwnershipLost(Exception):
    """The key's partition is not ours any more (or its local deadline passed): no request may start; the message
    goes back to its queue for the next owner."""


@dataclass(frozen=True)
class EngineConfig:
    pool: str
    batch_size: int = 100
    batch_wait_s: float = 0.02  # a batch lingers at most this long while plans keep coming ...
    batch_gap_s: float | None = None  # ... and goes once none came for this long
    max_in_flight: int = 32  # SCIM requests of this replica at once (when no shared ``slots`` is given)


@dataclass(eq=False)
class Item:
    delivery: Delivery
    plan: Plan | None  # None: not a plan (settled as invalid)
    partition: int
    result: Done | Failure | Blocked | None = None
    outcome: Outcome | GroupOutcome | None = None
    lost: bool = False  # ownership lost before it was settled: back to the queue, no audit

    @property
    def key(self) -> str:
        return key_of(self.plan) if self.plan is not None else f"invalid|{id(self)}"


@dataclass
class _Lease:
    token: int
    deadline: float  # on this process's monotonic clock


@dataclass
class Engine:
    ports: DispatcherPorts
    republisher: Republisher
    audit: AuditPublisher
    links: MongoLinks
    cfg: EngineConfig
    permits: Any  # per app: an async context manager factory, ``permits.slot(app_id, slots)`` (a PermitPool)
    monotonic: Any = time.monotonic
    slots: Slots | None = None  # the process's in-flight limit, shared by the engines of all its pools
    owned: dict[int, _Lease] = field(default_factory=dict)
    _queues: dict[str, deque[Item]] = field(default_factory=dict)
    _running: dict[str, int] = field(default_factory=dict)  # key -> its partition
    _idle: dict[int, asyncio.Event] = field(default_factory=dict)
    _giving_back: dict[int, asyncio.Task] = field(default_factory=dict)
    _draining: set[int] = field(default_factory=set)  # being handed over: no request starts, the plans go back

    def __post_init__(self) -> None:
        size, wait, gap = self.cfg.batch_size, self.cfg.batch_wait_s, self.cfg.batch_gap_s
        self._starter: Batcher[str] = Batcher(self._start, size, wait, gap_s=gap)
        self._completer: Batcher[list[Item]] = Batcher(self._complete, size, wait, gap_s=gap)
        self._slots = self.slots if self.slots is not None else Slots(self.cfg.max_in_flight)
        self.consumer: Any = None  # set by the composition root: consume(queue), cancel(queue)
        self.queue_of: Any = None  # partition -> queue name

    # --- the partitions this replica owns (okta_bridge.partitions.Holder) ----------------------------------------
    async def gained(self, partition: int, token: int, deadline: float) -> None:
        self.owned[partition] = _Lease(token, deadline)
        self._draining.discard(partition)
        asyncio.get_running_loop().create_task(self._consume(partition))  # never holds up the lease renewals

    async def _consume(self, partition: int) -> None:
        """Starts consuming the partition's queue, again and again while the broker is away, as long as it is ours."""
        giving_back = self._giving_back.pop(partition, None)
        if giving_back is not None:  # lost a moment ago: its consumer is cancelled first, then consumed again
            await asyncio.gather(giving_back, return_exceptions=True)
        delay = 0.2
        while partition in self.owned:
            try:
                await asyncio.wait_for(self.consumer.consume(self.queue_of(partition)), 10)
                if partition not in self.owned:  # lost while subscribing
                    await self.consumer.cancel(self.queue_of(partition))
                return
            except Exception as exc:  # noqa: BLE001 - the broker is restarting: try again
                log.warning("consuming partition %d of pool %s: %s; trying again", partition, self.cfg.pool, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def extended(self, partition: int, deadline: float) -> None:
        if partition in self.owned:
            self.owned[partition].deadline = deadline

    async def drain(self, partition: int) -> None:
        """Stop consuming, give back what has not started, let the requests in flight finish; the partition can then
        be released. No request of the partition starts any more: a key waiting at the gate (for a permit or a slot,
        or for its plan's next request) stops there and its plans go back to their partition, unaudited, as when the
        partition is lost; so a hand-over waits for the requests in flight, not for the partition's backlog."""
        self._draining.add(partition)
        await self._cancel(partition)
        await self._return_waiting(partition)
        while any(p == partition for p in self._running.values()):
            event = self._idle.setdefault(partition, asyncio.Event())
            event.clear()
            await event.wait()
        if partition in self._draining:  # not gained back meanwhile
            self._draining.discard(partition)
            self.owned.pop(partition, None)

    async def lost(self, partition: int) -> None:
        """The deadline passed or the lease is gone: stop at once (running keys stop at their next request); the
        consumer is cancelled and what waits is given back in the background, never holding up a lease renewal
        (a broker that is away can take seconds to answer)."""
        self.owned.pop(partition, None)
        self._giving_back[partition] = asyncio.get_running_loop().create_task(self._give_back(partition))

    async def _give_back(self, partition: int) -> None:
        await self._cancel(partition)
        if partition not in self.owned:  # not gained again meanwhile
            await self._return_waiting(partition)

    async def _cancel(self, partition: int) -> None:
        try:
            await asyncio.wait_for(self.consumer.cancel(self.queue_of(partition)), 10)
        except Exception as exc:  # noqa: BLE001 - the channel is gone: nothing is consumed from it anyway
            log.warning("cancelling partition %d of pool %s: %s", partition, self.cfg.pool, exc)

    async def _return_waiting(self, partition: int) -> None:
        for key in [k for k, q in self._queues.items() if q and q[0].partition == partition and k not in self._running]:
            for item in self._queues.pop(key):
                await self._return(item)

    async def _return(self, item: Item) -> None:
        """A plan an ownership change cut off goes back to its partition for the next owner: re-published (confirmed)
        at the tail of the partition's queue, then acked. A requeue would count towards the queue's delivery limit,
        and a plan cut off by a few hand-overs would be dead-lettered. Its place in the queue does not matter: an
        older user plan after a newer one is skipped as stale (versions), membership plans are level-triggered.
        Only if the broker refuses the publish is it requeued (or, with the channel gone, redelivered anyway)."""
        if item.delivery.settled:
            return
        try:
            await self.republisher.back(item.delivery.body, partition_key(self.cfg.pool, item.partition),
                                        item.delivery.attempt, context=item.delivery.context(),
                                        held_since=item.delivery.held_since)
        except Exception as exc:  # noqa: BLE001 - the broker is away: the delivery count is the lesser evil
            log.warning("returning a plan to partition %d of pool %s failed (%s); requeued", item.partition,
                        self.cfg.pool, exc)
            await item.delivery.requeue()
            return
        await item.delivery.ack()

    # --- the gate every SCIM request passes ----------------------------------------------------------------------
    @asynccontextmanager
    async def gate(self, app_id: str) -> AsyncIterator[None]:
        partition = _PARTITION.get()
        self._check(partition)
        # the app's permit and one of this replica's slots, taken together: never one held while waiting for the other
        # while waiting, only a hand-over ends the wait (its plans go back to their partition at once); a partition
        # past its local deadline is usually renewed again within moments, so the wait goes on and the deadline is
        # checked once the request may start
        async with self.permits.slot(app_id, self._slots, check=lambda: self._check_handed_over(partition)):
            self._check(partition)  # waiting may have taken us past the deadline
            yield

    def _check_handed_over(self, partition: int | None) -> None:
        if partition is not None and partition in self._draining:
            raise OwnershipLost(f"partition {partition} of pool {self.cfg.pool} is being handed over")

    def _check(self, partition: int | None) -> None:
        if partition is None:  # not a partitioned key's work (a tool, a test): nothing to guard
            return
        lease = self.owned.get(partition)
        if lease is None or self.monotonic() >= lease.deadline:
            raise OwnershipLost(f"partition {partition} of pool {self.cfg.pool} is not ours any more")
        self._check_handed_over(partition)

    # --- intake ----------------------------------------------------------------------------------------------------
    def on_delivery(self, delivery: Delivery, partition: int) -> None:
        try:
            plan: Plan | None = PLAN_MESSAGES.validate_json(delivery.body)
        except ValidationError as exc:
            plan, invalid = None, invalid_message(exc, "invalid plan: not a plan message")
        item = Item(delivery, plan, partition, result=invalid if plan is None else None)
        if plan is None:
            self._completer.add([item])
            return
        if partition not in self.owned:  # consumed just before the consumer was cancelled
            asyncio.get_running_loop().create_task(self._return(item))
            return
        _describe(delivery, plan)
        self._queues.setdefault(item.key, deque()).append(item)
        if item.key not in self._running:
            self._starter.add(item.key)

    async def _start(self, keys: list[str]) -> None:
        starting: dict[str, list[Item]] = {}
        for key in dict.fromkeys(keys):
            queue = self._queues.get(key)
            if key in self._running or not queue:
                continue
            items = list(queue)
            queue.clear()
            starting[key] = items
            self._running[key] = items[0].partition
        user_keys = [(i[0].plan.app_id, i[0].plan.okta_user_id) for i in starting.values()
                     if isinstance(i[0].plan, ScimOperationPlanned)]
        try:
            links = await self.links.get_keys(user_keys) if user_keys else {}
        except Exception as exc:  # noqa: BLE001 - the database is away: every message goes through the tiers
            for items in starting.values():
                for item in items:
                    item.result = failure_of(exc)
                self._completer.add(items)
            return
        for key, items in starting.items():
            plan = items[0].plan
            link = links.get((plan.app_id, plan.okta_user_id)) if isinstance(plan, ScimOperationPlanned) else None
            asyncio.get_running_loop().create_task(self._run(items, link))

    # --- running one key -------------------------------------------------------------------------------------------
    async def _run(self, items: list[Item], link: Link | None) -> None:
        token = _PARTITION.set(items[0].partition)
        try:
            if isinstance(items[0].plan, ScimOperationPlanned):
                await self._run_user(items, link)
            else:
                await self._run_group(items)
        except OwnershipLost:
            for item in items:
                if item.result is None:
                    item.lost = True
        finally:
            _PARTITION.reset(token)
            self._completer.add(items)

    async def _run_user(self, items: list[Item], link: Link | None) -> None:
        newest = max(items, key=lambda i: i.plan.version)
        for item in items:
            if item is not newest:
                item.result = Done(AuditStep.SKIPPED_STALE, Reason.SUPERSEDED,
                                   f"plan v{item.plan.version} superseded by v{newest.plan.version} in the same batch")
        await self._attempt(newest, lambda: self.ports.users.apply(newest.plan, link, self._fence(newest)))

    def _fence(self, item: Item) -> int:
        """The fencing token of the item's partition, on every database write of its plan (0: not owned)."""
        return self.owned[item.partition].token if item.partition in self.owned else 0

    async def _run_group(self, items: list[Item]) -> None:
        pending: list[Item] = []
        for item in items + [None]:  # consecutive membership plans of one group are applied as one
            if isinstance(item, Item) and isinstance(item.plan, MembershipPlanned):
                pending.append(item)
                continue
            if pending:
                await self._members(pending)
                pending = []
            if item is not None:
                await self._attempt(item, lambda i=item: self.ports.groups.apply_group(i.plan, self._fence(i)))

    async def _members(self, items: list[Item]) -> None:
        first = items[0].plan
        users = tuple(dict.fromkeys(u for i in items for u in i.plan.okta_user_ids))
        merged = first.model_copy(update={"okta_user_ids": users})
        await self._attempt(items[0], lambda: self.ports.groups.apply_members(merged, self._fence(items[0])))
        for item in items[1:]:
            item.result, item.outcome = items[0].result, items[0].outcome

    async def _attempt(self, item: Item, apply) -> None:
        plan = item.plan
        if plan.app_id not in self.ports.apps:
            item.result = Failure(Reason.NOT_CONFIGURED, "app not served by this pool's configuration")
            return
        if not self.ports.circuits.allow(plan.app_id):
            item.result = Blocked(self.ports.circuits.reason(plan.app_id))
            return
        context = otel_context.attach(item.delivery.context())
        try:
            item.outcome = await apply()
            item.result = outcome_done(item.outcome)
        except OwnershipLost:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is settled by the policy
            item.result = failure_of(exc, personal_values(plan))
            if item.result.reason is Reason.INTERNAL:
                log.exception("applying a plan failed")
        finally:
            otel_context.detach(context)

    # --- completing a batch ----------------------------------------------------------------------------------------
    async def _complete(self, batches: list[list[Item]]) -> None:
        items = [i for batch in batches for i in batch]
        failed = False
        for item in items:  # its partition went to another replica meanwhile: that one applies it again
            item.lost = item.lost or (item.plan is not None and item.partition not in self.owned)
        try:
            async with self.audit.batch():
                await self._store_links([i for i in items if not i.lost])
                await asyncio.gather(*(self._settle(i) for i in items if not i.lost))
        except Exception:  # noqa: BLE001 - the broker or the database failed midway: nothing is acked
            log.exception("completing a batch of %d plans failed; they go back to their queues", len(items))
            failed = True
            for item in items:
                item.lost = True
        for item in items:
            if item.lost and failed:
                await item.delivery.requeue()  # applied again later: idempotent, version-checked
            elif item.lost:
                await self._return(item)  # an ownership change: the next owner applies it
            else:
                await item.delivery.ack()
        for batch in batches:
            self._release(batch)

    async def _store_links(self, items: list[Item]) -> None:
        writing = [i for i in items if isinstance(i.outcome, Outcome) and i.outcome.link is not None]
        if not writing:
            return
        try:
            landed = await self.links.save_many([i.outcome.link for i in writing])
        except LinkWriteError as exc:
            landed = exc.landed
            for index in exc.failed:
                writing[index].result = failure_of(exc)
        except Exception as exc:  # noqa: BLE001 - the database is away: the messages go through the tiers
            for item in writing:
                item.result = failure_of(exc)
            return
        for item, ok in zip(writing, landed):
            if not ok and isinstance(item.result, Done):
                item.outcome = item.outcome.stale(f"a newer plan than v{item.plan.version} was applied meanwhile, "
                                                  "or the partition changed owner")
                item.result = outcome_done(item.outcome)

    async def _settle(self, item: Item) -> None:
        if item.plan is None:
            failure = item.result if isinstance(item.result, Failure) else \
                Failure(Reason.INVALID_MESSAGE, "invalid plan: not a plan message")
            await carry_out(settle(failure, attempt=item.delivery.attempt, max_attempts=self.republisher.max_attempts),
                            item.delivery.body, item.delivery.attempt, republisher=self.republisher,
                            audit=self.audit, source=SOURCE, fields={})
            return
        app_id, configured = item.plan.app_id, item.plan.app_id in self.ports.apps
        circuit = self.ports.circuits.view(app_id) if configured else None
        verdict = settle(item.result, attempt=item.delivery.attempt, max_attempts=self.republisher.max_attempts,
                         circuit=circuit)
        if configured:
            self.ports.circuits.apply(app_id, verdict.circuit, verdict.circuit_reason)
        context = otel_context.attach(item.delivery.context())
        try:
            await carry_out(verdict, item.plan, item.delivery.attempt, republisher=self.republisher,
                            audit=self.audit, source=SOURCE, fields=plan_fields(item.plan),
                            done=done_fields(item.outcome), routing_key=item.delivery.routing_key,
                            held_since=item.delivery.held_since)
            if item.outcome is not None and isinstance(item.result, Done):
                await after_applied(self.ports, self.republisher, item.plan, item.outcome, item.delivery.attempt,
                                    plan_fields(item.plan))
        finally:
            otel_context.detach(context)

    def _release(self, items: list[Item]) -> None:
        key, partition = items[0].key, items[0].partition
        if self._running.pop(key, None) is not None:
            if self._queues.get(key):
                self._starter.add(key)
            elif key in self._queues:
                del self._queues[key]
            if not any(p == partition for p in self._running.values()) and partition in self._idle:
                self._idle[partition].set()

    async def close(self) -> None:
        await self._starter.drain()
        while self._running:
            await asyncio.sleep(0.05)
        await self._completer.drain()


def _describe(delivery: Delivery, plan: Plan) -> None:
    delivery.span.set_attribute(ATTR.APP_ID, plan.app_id)
    if plan.event_uuid:  # log lines written while the plan is worked on name its event (okta_bridge.logs)
        delivery.span.set_attribute(ATTR.EVENT_UUID, plan.event_uuid)
    if isinstance(plan, ScimOperationPlanned):
        delivery.span.set_attribute(ATTR.USER_ID, plan.okta_user_id)
        delivery.span.set_attribute(ATTR.PLAN_VERSION, plan.version)
    else:
        delivery.span.set_attribute("okta.group.id", plan.okta_group_id)
