"""RabbitMQ topology: every exchange, queue and routing key, declared explicitly and in one place.

| exchange / queue                        | publisher        | consumer         | notes                                      |
|-----------------------------------------|------------------|------------------|--------------------------------------------|
| ``bridge.events`` (topic)               | queue-poller     |                  | rk ``okta.event.<type>``, ``okta.sync``    |
|                                         | bridgectl,       |                  | "look again" events and syncs; group and   |
|                                         |  console         |                  |  membership plans to ``bridge.plans``      |
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
|                                         |                  |  (bridgectl,     |                                            |
|                                         |                  |  console)        |                                            |

Work queues are quorum queues with ``x-delivery-limit`` (poison messages go to ``bridge.dlx``). Delay queues (retry
tiers, hold) are quorum queues with a message TTL whose expired messages dead-letter (at-least-once, which needs
``x-overflow: reject-publish``): the translator's and the audit's to the default exchange with the work queue's name
as routing key; a pool's to ``bridge.plans`` with the routing key the message was published with, so a plan returns
to its own partition. A re-published message is a new message: waiting in a tier never counts against the delivery
limit.

Who declares: ``bridgectl topology apply`` (a one-shot job before the services: compose's ``topology``
service, the chart's hook) declares all of it, the partition queues of every pool in the connectors file included, as
a RabbitMQ user with configure rights. With ``BROKER_DECLARE=false`` the services only check, passively, that what
they use exists, so each can run as its own user with read and write rights and no configure rights
(:data:`PERMISSIONS`, printed by ``bridgectl topology permissions``). Local runs (the default,
``BROKER_DECLARE=true``) keep declaring at start.

Users that are not services of the pipeline: ``bridge-operator`` is bridgectl's, ``bridge-console`` the web
console's (``python -m bridge_console``). The console does what an operator does from its pages (reads the dead letters,
replays them, publishes "look again" events, syncs and group plans, its audit records), so it has the operator's
rights, as a user of its own: its password can be rotated, and its connections told apart, on their own.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "AUDIT_EXCHANGE",
    "AUDIT_QUEUE",
    "DEAD_LETTER_QUEUE",
    "DLX",
    "EVENTS_EXCHANGE",
    "PERMISSIONS",
    "Permission",
    "TopologyMissing",
    "HOLD_TTL_MS",
    "PLANS_EXCHANGE",
    "PLAN_HOLD_EXCHANGE",
    "RETRY_TIERS_MS",
    "TRANSLATOR_QUEUE",
    "apply",
    "audit_names",
    "declare_audit",
    "declare_dispatcher_pool",
    "declare_translator",
    "hold_queue_name",
    "key_of",
    "legacy_pool_queue",
    "partition_key",
    "partition_of",
    "partition_queue",
    "permissions_for",
    "plan_retry_exchange",
    "pool_names",
    "translator_names",
    "verify",
    "retry_queue_name",
    "retry_tier_for",
]

log = logging.getLogger(__name__)
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


class DeadLetterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEAD_LETTERS_", extra="ignore")

    retention_days: float = Field(default=30, gt=0, le=3650, description="a dead letter is dropped after this")


async def _declare_common(broker: RabbitBroker) -> None:
    await broker.declare_exchange(DLX)
    await declare_dead_letters(await broker.connect())


async def declare_dead_letters(connection, retention_days: float | None = None) -> bool:
    """``bridge.dead-letters`` with its retention (``x-message-ttl``: RabbitMQ drops a dead letter older than
    ``DEAD_LETTERS_RETENTION_DAYS``), bound to ``bridge.dlx``. A queue of an older release (no retention) or of another
    retention cannot be changed by a declaration: it is kept as it is, with a warning saying how to change it (a
    policy, or deleting the queue once it is empty); returns False then."""
    import aiormq

    days = retention_days if retention_days is not None else DeadLetterSettings().retention_days
    arguments = {"x-queue-type": "quorum", "x-message-ttl": int(days * 86_400_000)}
    channel = await connection.channel()
    matched = True
    try:
        queue = await channel.declare_queue(DEAD_LETTER_QUEUE.name, durable=True, arguments=arguments)
    except aiormq.exceptions.ChannelPreconditionFailed:
        matched = False
        log.warning("%s exists with another retention than %s days: kept as it is. Set it with `rabbitmqctl "
                    "set_policy --apply-to queues bridge-dead-letters '^bridge\\.dead-letters$' "
                    "'{\"message-ttl\": %d}'`, or delete the queue once it is empty and apply the topology again",
                    DEAD_LETTER_QUEUE.name, f"{days:g}", arguments["x-message-ttl"])
        channel = await connection.channel()
        queue = await channel.declare_queue(DEAD_LETTER_QUEUE.name, passive=True)
    try:
        await queue.bind(DLX.name, routing_key="#")
    finally:
        await channel.close()
    return matched


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


async def apply(broker: RabbitBroker, pools: dict[str, int]) -> None:
    """Everything: the translator's and the audit's queues, the dead letters with their retention, and each pool's
    partition, retry and hold queues (the one-shot ``apply`` command)."""
    await declare_translator(broker)
    for pool, partitions in sorted(pools.items()):
        await declare_dispatcher_pool(broker, pool, partitions)


# ---------------------------------------------------------------------------------------------- passive checks

Names = tuple[tuple[str, ...], tuple[str, ...]]  # (exchanges, queues)


def _delay_names(work_queue: str) -> tuple[str, ...]:
    return (*(retry_queue_name(work_queue, t) for t in range(len(RETRY_TIERS_MS))), hold_queue_name(work_queue))


def audit_names() -> Names:
    return (DLX.name, AUDIT_EXCHANGE.name), (DEAD_LETTER_QUEUE.name, AUDIT_QUEUE.name, *_delay_names(AUDIT_QUEUE.name))


def translator_names() -> Names:
    exchanges, queues = audit_names()
    return ((*exchanges, EVENTS_EXCHANGE.name),
            (*queues, TRANSLATOR_QUEUE.name, *_delay_names(TRANSLATOR_QUEUE.name)))


def pool_names(pool: str, partitions: int) -> Names:
    exchanges, queues = audit_names()
    return ((*exchanges, PLANS_EXCHANGE.name, PLAN_HOLD_EXCHANGE.name,
             *(plan_retry_exchange(t).name for t in range(len(RETRY_TIERS_MS)))),
            (*queues, *(partition_queue(pool, p).name for p in range(partitions)), *_delay_names(f"plans.{pool}")))


class TopologyMissing(RuntimeError):
    """An exchange or queue a service uses does not exist, and the service may not declare it."""


async def verify(connection, *names: Names) -> None:
    """Passive declarations (no configure right needed) of the exchanges and queues a service uses, on a channel of
    its own (a 404 closes the channel). Raises :class:`TopologyMissing` naming the first missing one."""
    import aio_pika

    for exchanges, queues in names:
        for kind, items in (("exchange", exchanges), ("queue", queues)):
            for name in items:
                channel = await connection.channel()
                try:
                    if kind == "exchange":
                        await channel.declare_exchange(name, passive=True)
                    else:
                        await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelClosed as exc:
                    raise TopologyMissing(
                        f"RabbitMQ {kind} {name} does not exist ({type(exc).__name__}): run `bridgectl "
                        "topology apply` first (or set BROKER_DECLARE=true for a user with configure "
                        "rights)") from None
                finally:
                    if not channel.is_closed:
                        await channel.close()


# ---------------------------------------------------------------------------------------------- permissions

@dataclass(frozen=True)
class Permission:
    """One user's ``rabbitmqctl set_permissions`` regexes: configure, write, read (RabbitMQ's order). Passive
    declarations need none; a publish needs write on the exchange (``amq.default`` for the default exchange); a
    consume or ``basic.get`` needs read on the queue."""
    configure: str
    write: str
    read: str

    def command(self, user: str, vhost: str = "/") -> str:
        return f"rabbitmqctl set_permissions -p {vhost} {user} '{self.configure}' '{self.write}' '{self.read}'"


_NOTHING = "^$"


def _any_of(*names: str) -> str:
    return "^(" + "|".join(re.escape(n) if not n.endswith(".*") else re.escape(n[:-2]) + r"\..*" for n in names) + ")$"


def permissions_for(pools: list[str] | tuple[str, ...] = ("default",)) -> dict[str, Permission]:
    """Per user: what each service does with the broker and nothing more. A dispatcher's read right names its pools'
    partition queues (and the queue of releases before partitions, which it drains): one user per dispatcher
    deployment serving ``pools``."""
    pool_queues = "|".join(re.escape(p) for p in sorted(pools))
    users = {
        # declares everything: exchanges, queues, bindings (a binding needs write on the queue, read on the exchange;
        # a queue whose dead letters go to an exchange needs write on it, amq.default for the default exchange)
        "bridge-topology": Permission(r"^(bridge|translator|dispatcher|plans|audit)\..*$",
                                      r"^((bridge|translator|dispatcher|plans|audit)\..*|amq\.default)$",
                                      r"^(bridge|translator|dispatcher|plans|audit)\..*$"),
        "bridge-poller": Permission(_NOTHING, _any_of(EVENTS_EXCHANGE.name, AUDIT_EXCHANGE.name, DLX.name), _NOTHING),
        # retry tiers and hold through the default exchange; plans to bridge.plans
        "bridge-translator": Permission(_NOTHING, _any_of(PLANS_EXCHANGE.name, AUDIT_EXCHANGE.name, DLX.name,
                                                          "amq.default"),
                                        _any_of(TRANSLATOR_QUEUE.name)),
        "bridge-dispatcher": Permission(_NOTHING, _any_of(PLANS_EXCHANGE.name, "bridge.plans.retry.*",
                                                          PLAN_HOLD_EXCHANGE.name, EVENTS_EXCHANGE.name,
                                                          AUDIT_EXCHANGE.name, DLX.name),
                                        rf"^dispatcher\.({pool_queues})(\.p[0-9]{{3}})?$"),
        # also rewrites the dead letters RabbitMQ made whole as their records (okta_bridge.deadletters.compact)
        "bridge-audit": Permission(_NOTHING, _any_of("amq.default", DLX.name),
                                   _any_of(AUDIT_QUEUE.name, DEAD_LETTER_QUEUE.name)),
        # bridgectl: reads the dead letters (dlq), replays them and publishes "look again" events (dlq replay,
        # provision, guard release) and syncs (drift --repair) to the translator, group and membership plans to
        # their partition (delete-group, dlq replay), its audit records; status's queue counts are passive declares
        # (no right needed)
        "bridge-operator": Permission(_NOTHING, _any_of(EVENTS_EXCHANGE.name, PLANS_EXCHANGE.name,
                                                        AUDIT_EXCHANGE.name),
                                      _any_of(DEAD_LETTER_QUEUE.name)),
    }
    # the web console: what bridgectl does, from its pages (preview and provision, dead-letter replay), as its own
    # user (deploy/helm: console.rabbitmqSecret)
    users["bridge-console"] = users["bridge-operator"]
    return users


PERMISSIONS = permissions_for()
