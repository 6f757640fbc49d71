"""RabbitMQ topology: every exchange, queue and routing key, declared explicitly and in one place.

| exchange / queue                      | publisher          | consumer          | notes                                    |
|---------------------------------------|--------------------|-------------------|------------------------------------------|
| ``bridge.events`` (topic)             | queue-poller       |                   | rk ``okta.event.<type>``, ``okta.sync``  |
| ``translator.work`` (quorum)          |                    | translator        | bound ``okta.#``                         |
| ``translator.retry.<tier>`` (quorum)  | translator         | (TTL)             | dead-letters back to ``translator.work`` |
|   (rk ``okta.writeback``)             | scim-dispatcher    | translator        | accept_user_updates write-back           |
| ``bridge.plans`` (direct)             | translator         |                   | rk = dispatcher pool                     |
| ``dispatcher.<pool>`` (quorum)        |                    | scim-dispatcher   | bound rk ``<pool>``                      |
| ``dispatcher.<pool>.retry.<tier>``    | scim-dispatcher    | (TTL)             | dead-letters back to ``dispatcher.<pool>``|
| ``dispatcher.<pool>.hold`` (quorum)   | scim-dispatcher    | (TTL)             | app circuit open: parked, loops back     |
| ``bridge.audit`` (fanout)             | every service      |                   |                                          |
| ``audit.records`` (quorum)            |                    | audit-recorder    | + retry tiers, as above                  |
| ``bridge.dlx`` (topic)                | broker, services   |                   | poison (delivery limit) and permanent    |
| ``bridge.dead-letters`` (quorum)      |                    | operators         | bound ``#``; reason in headers           |

Work queues are quorum queues with ``x-delivery-limit`` (poison messages go to ``bridge.dlx``). Retry tiers and the
hold queue are quorum queues with a message TTL whose expired messages dead-letter (at-least-once, which needs
``x-overflow: reject-publish``) to the default exchange with the work queue's name as routing key. A re-published
message is a new message, so waiting in a tier never counts against the delivery limit.
"""

from __future__ import annotations

from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue

__all__ = [
    "AUDIT_EXCHANGE",
    "AUDIT_QUEUE",
    "DEAD_LETTER_QUEUE",
    "DLX",
    "EVENTS_EXCHANGE",
    "HOLD_TTL_MS",
    "PLANS_EXCHANGE",
    "RETRY_TIERS_MS",
    "TRANSLATOR_QUEUE",
    "declare_audit",
    "declare_dispatcher_pool",
    "declare_translator",
    "dispatcher_queue",
    "hold_queue_name",
    "retry_queue_name",
    "retry_tier_for",
]

DELIVERY_LIMIT = 5
RETRY_TIERS_MS = (1_000, 4_000, 15_000, 60_000, 300_000)
HOLD_TTL_MS = 15_000

EVENTS_EXCHANGE = RabbitExchange("bridge.events", type=ExchangeType.TOPIC, durable=True)
PLANS_EXCHANGE = RabbitExchange("bridge.plans", type=ExchangeType.DIRECT, durable=True)
AUDIT_EXCHANGE = RabbitExchange("bridge.audit", type=ExchangeType.FANOUT, durable=True)
DLX = RabbitExchange("bridge.dlx", type=ExchangeType.TOPIC, durable=True)

EVENT_ROUTING_PREFIX = "okta.event."
SYNC_ROUTING_KEY = "okta.sync"
WRITEBACK_ROUTING_KEY = "okta.writeback"


def _work_queue(name: str, routing_key: str) -> RabbitQueue:
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        routing_key=routing_key,
        arguments={
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": DLX.name,
            "x-dead-letter-routing-key": name,
        },
    )


def _delay_queue(name: str, ttl_ms: int, back_to: str) -> RabbitQueue:
    return RabbitQueue(
        name,
        queue_type=QueueType.QUORUM,
        arguments={
            "x-message-ttl": ttl_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": back_to,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )


TRANSLATOR_QUEUE = _work_queue("translator.work", "okta.#")
AUDIT_QUEUE = _work_queue("audit.records", "")
DEAD_LETTER_QUEUE = RabbitQueue("bridge.dead-letters", queue_type=QueueType.QUORUM, routing_key="#")


def dispatcher_queue(pool: str) -> RabbitQueue:
    return _work_queue(f"dispatcher.{pool}", pool)


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


async def declare_dispatcher_pool(broker: RabbitBroker, pool: str) -> None:
    await _declare_common(broker)
    exchange = await broker.declare_exchange(PLANS_EXCHANGE)
    queue = await broker.declare_queue(dispatcher_queue(pool))
    await queue.bind(exchange, routing_key=pool)
    await _declare_delays(broker, dispatcher_queue(pool).name)
    await declare_audit(broker)


async def declare_audit(broker: RabbitBroker) -> None:
    await _declare_common(broker)
    exchange = await broker.declare_exchange(AUDIT_EXCHANGE)
    queue = await broker.declare_queue(AUDIT_QUEUE)
    await queue.bind(exchange)
    await _declare_delays(broker, AUDIT_QUEUE.name)  # a database outage waits in the tiers, not in a hot requeue
