"""RabbitMQ topology: every exchange, queue and routing key, declared explicitly and in one place.

| exchange / queue                        | publisher        | consumer         | notes                                      |
|-----------------------------------------|------------------|------------------|--------------------------------------------|
| ``bridge.events`` (topic)               | queue-poller     |                  | rk ``okta.event.<type>``, ``okta.sync``    |
| ``translator.work`` (quorum)            |                  | translator       | bound ``okta.#``                           |
| ``translator.work.retry.<tier>``        | translator       | (TTL)            | dead-letters back to ``translator.work``   |
|   (rk ``okta.writeback``)               | scim-dispatcher  | translator       | accept_user_updates write-back             |
| ``bridge.plans`` (direct)               | translator       |                  | rk ``<pool>.<NNN>``: the key's partition   |
| ``dispatcher.<pool>.p<NNN>`` (quorum,   |                  | scim-dispatcher  | one per partition; consumed only by the    |
|   single active consumer)               |                  |  (the owner)     | replica owning the partition               |
| ``bridge.plans.retry.<tier>`` (topic)   | scim-dispatcher  |                  | rk ``<pool>.<NNN>`` kept                   |
| ``plans.<pool>.retry.<tier>``           |                  | (TTL)            | bound ``<pool>.*``; dead-letters to        |
|                                         |                  |                  | ``bridge.plans`` with the message's own rk |
| ``bridge.plans.hold`` (topic) →         | scim-dispatcher  | (TTL)            | app circuit open: parked, loops back to    |
|   ``plans.<pool>.hold``                 |                  |                  | its partition                              |
| ``bridge.audit`` (fanout)               | every service    |                  | ``AuditBatch``: a batch's records          |
| ``audit.records`` (quorum)              |                  | audit-recorder   | + retry tiers, as the translator's         |
| ``bridge.dlx`` (topic)                  | broker, services |                  | poison (delivery limit) and permanent      |
| ``bridge.dead-letters`` (quorum)        |                  | operators        | bound ``#``; reason in headers             |

Work queues are quorum queues with ``x-delivery-limit`` (poison messages go to ``bridge.dlx``). Delay queues (retry
tiers, hold) are quorum queues with a message TTL whose expired messages dead-letter (at-least-once, which needs
``x-overflow: reject-publish``): the translator's and the audit's to the default exchange with the work queue's name
as routing key; a pool's to ``bridge.plans`` with the routing key the message was published with, so a plan returns
to its own partition. A re-published message is a new message: waiting in a tier never counts against the delivery
limit.
"""

from __future__ import annotations

import hashlib

from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue

__all__ = [
    "AUDIT_EXCHANGE",
    "AUDIT_QUEUE",
    "DEAD_LETTER_QUEUE",
    "DLX",
    "EVENTS_EXCHANGE",
    "HOLD_TTL_MS",
    "PLANS_EXCHANGE",
    "PLAN_HOLD_EXCHANGE",
    "RETRY_TIERS_MS",
    "TRANSLATOR_QUEUE",
    "declare_audit",
    "declare_dispatcher_pool",
    "declare_translator",
    "hold_queue_name",
    "key_of",
    "legacy_pool_queue",
    "partition_key",
    "partition_of",
    "partition_queue",
    "plan_retry_exchange",
    "retry_queue_name",
    "retry_tier_for",
]

DELIVERY_LIMIT = 5
RETRY_TIERS_MS = (1_000, 4_000, 15_000, 60_000, 300_000)
HOLD_TTL_MS = 15_000

EVENTS_EXCHANGE = RabbitExchange("bridge.events", type=ExchangeType.TOPIC, durable=True)
PLANS_EXCHANGE = RabbitExchange("bridge.plans", type=ExchangeType.DIRECT, durable=True)
PLAN_HOLD_EXCHANGE = RabbitExchange("bridge.plans.hold", type=ExchangeType.TOPIC, durable=True)
AUDIT_EXCHANGE = RabbitExchange("bridge.audit", type=ExchangeType.FANOUT, durable=True)
DLX = RabbitExchange("bridge.dlx", type=ExchangeType.TOPIC, durable=True)

EVENT_ROUTING_PREFIX = "okta.event."
SYNC_ROUTING_KEY = "okta.sync"
WRITEBACK_ROUTING_KEY = "okta.writeback"


def _work_queue(name: str, routing_key: str, single_active: bool = False) -> RabbitQueue:
    arguments = {"x-delivery-limit": DELIVERY_LIMIT, "x-dead-letter-exchange": DLX.name,
                 "x-dead-letter-routing-key": name}
    if single_active:
        arguments["x-single-active-consumer"] = True
    return RabbitQueue(name, queue_type=QueueType.QUORUM, routing_key=routing_key, arguments=arguments)


def _delay_queue(name: str, ttl_ms: int, back_to: str | None) -> RabbitQueue:
    """``back_to``: a queue name (via the default exchange); None: ``bridge.plans`` with the message's own key."""
    arguments = {"x-message-ttl": ttl_ms, "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    if back_to is None:
        arguments["x-dead-letter-exchange"] = PLANS_EXCHANGE.name
    else:
        arguments.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": back_to})
    return RabbitQueue(name, queue_type=QueueType.QUORUM, arguments=arguments)


TRANSLATOR_QUEUE = _work_queue("translator.work", "okta.#")
AUDIT_QUEUE = _work_queue("audit.records", "")
DEAD_LETTER_QUEUE = RabbitQueue("bridge.dead-letters", queue_type=QueueType.QUORUM, routing_key="#")


def partition_of(key: str, partitions: int) -> int:
    """A stable hash of a key (``app|user`` or ``app|group:<id>``) to one of a pool's partitions: the same on every
    host and Python (BLAKE2b, not ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % partitions


def key_of(plan) -> str:
    """The ordering key of a plan: ``app|user`` for a user plan, ``app|group:<id>`` for a group or membership plan."""
    user = getattr(plan, "okta_user_id", None)
    return f"{plan.app_id}|{user}" if user is not None else f"{plan.app_id}|group:{plan.okta_group_id}"


def partition_key(pool: str, partition: int) -> str:
    return f"{pool}.{partition:03d}"


def partition_queue(pool: str, partition: int) -> RabbitQueue:
    return _work_queue(f"dispatcher.{pool}.p{partition:03d}", partition_key(pool, partition), single_active=True)


def legacy_pool_queue(pool: str) -> str:
    """The one queue per pool of releases before partitions: drained into the partitions when found."""
    return f"dispatcher.{pool}"


def plan_retry_exchange(tier: int) -> RabbitExchange:
    return RabbitExchange(f"bridge.plans.retry.{RETRY_TIERS_MS[tier] // 1000}s", type=ExchangeType.TOPIC,
                          durable=True)


def retry_queue_name(work_queue: str, tier: int) -> str:
    return f"{work_queue}.retry.{RETRY_TIERS_MS[tier] // 1000}s"


def hold_queue_name(work_queue: str) -> str:
    return f"{work_queue}.hold"


def retry_tier_for(attempt: int) -> int:
    """Exponential tiers: attempt 1 -> 1 s, 2 -> 4 s, 3 -> 15 s, 4 -> 60 s, then 300 s."""
    return min(max(attempt, 1), len(RETRY_TIERS_MS)) - 1


async def _declare_common(broker: RabbitBroker) -> None:
    dlx = await broker.declare_exchange(DLX)
    dead = await broker.declare_queue(DEAD_LETTER_QUEUE)
    await dead.bind(dlx, routing_key="#")


async def _declare_delays(broker: RabbitBroker, work_queue: str) -> None:
    for tier, ttl in enumerate(RETRY_TIERS_MS):
        await broker.declare_queue(_delay_queue(retry_queue_name(work_queue, tier), ttl, work_queue))
    await broker.declare_queue(_delay_queue(hold_queue_name(work_queue), HOLD_TTL_MS, work_queue))


async def declare_translator(broker: RabbitBroker) -> None:
    """Declared by the poller (publisher) and the translator (consumer), so neither order of start loses messages."""
    await _declare_common(broker)
    exchange = await broker.declare_exchange(EVENTS_EXCHANGE)
    queue = await broker.declare_queue(TRANSLATOR_QUEUE)
    await queue.bind(exchange, routing_key="okta.#")
    await _declare_delays(broker, TRANSLATOR_QUEUE.name)
    await declare_audit(broker)


async def declare_dispatcher_pool(broker: RabbitBroker, pool: str, partitions: int) -> None:
    """The pool's partition queues, its retry tiers and its hold queue (declared by the translator, which routes to
    them, and by the dispatchers, which consume them)."""
    await _declare_common(broker)
    plans = await broker.declare_exchange(PLANS_EXCHANGE)
    for partition in range(partitions):
        queue = await broker.declare_queue(partition_queue(pool, partition))
        await queue.bind(plans, routing_key=partition_key(pool, partition))
    for tier, ttl in enumerate(RETRY_TIERS_MS):
        exchange = await broker.declare_exchange(plan_retry_exchange(tier))
        queue = await broker.declare_queue(_delay_queue(retry_queue_name(f"plans.{pool}", tier), ttl, None))
        await queue.bind(exchange, routing_key=f"{pool}.*")
    hold = await broker.declare_exchange(PLAN_HOLD_EXCHANGE)
    queue = await broker.declare_queue(_delay_queue(hold_queue_name(f"plans.{pool}"), HOLD_TTL_MS, None))
    await queue.bind(hold, routing_key=f"{pool}.*")
    await declare_audit(broker)


async def declare_audit(broker: RabbitBroker) -> None:
    await _declare_common(broker)
    exchange = await broker.declare_exchange(AUDIT_EXCHANGE)
    queue = await broker.declare_queue(AUDIT_QUEUE)
    await queue.bind(exchange)
    await _declare_delays(broker, AUDIT_QUEUE.name)  # a database outage waits in the tiers, not in a hot requeue
