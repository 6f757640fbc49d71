"""What every service process needs: the broker connection (FastStream: connection, declarations, lifecycle) and the
re-publish helpers (retry tiers, hold queue, dead letters) that carry out the outcome policy's verdicts.

Hot-path publishing and consuming go through :mod:`okta_bridge.bus` on channels of the same connection: persistent,
confirmed, ``mandatory`` (a message no queue accepts raises instead of vanishing). Messages are acknowledged by hand
only after their outcome (a write to MongoDB or a confirmed re-publish) is durable.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from faststream.rabbit import RabbitBroker
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from faststream.rabbit.schemas import Channel
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from opentelemetry.context import Context

from okta_bridge.bus import ATTEMPT_HEADER, HELD_HEADER, REASON_HEADER, Publisher
from okta_bridge.connectors import ConnectorsFile
from okta_bridge.deadletters import minimal
from okta_bridge.metrics import DEAD_LETTERS, HOLDS, PLANS, RETRIES, queue_family
from okta_bridge.topology import (DLX, PLAN_HOLD_EXCHANGE, PLANS_EXCHANGE, RETRY_TIERS_MS, audit_names,
                                  declare_audit, declare_dispatcher_pool, declare_translator, hold_queue_name, key_of,
                                  partition_key, partition_of, plan_retry_exchange, pool_names, retry_queue_name,
                                  retry_tier_for, translator_names, verify)

__all__ = ["ATTEMPT_HEADER", "DeclareSettings", "PartitionRoutes", "PlanPublisher", "QueueRoutes", "REASON_HEADER",
           "Republisher", "make_broker", "prepare_topology"]


class DeclareSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROKER_", extra="ignore")

    declare: bool = Field(default=True, description="declare the topology at start (a user with configure rights); "
                                                    "false: only check it passively (run `bridgectl "
                                                    "topology apply` first)")


async def prepare_topology(broker: RabbitBroker, connection, *, translator: bool = False, audit: bool = False,
                           pools: dict[str, int] | None = None, declare: bool | None = None) -> None:
    """What a service publishes to or consumes from, before it does: declared (``BROKER_DECLARE=true``, local runs)
    or checked passively (false: production, where the service's RabbitMQ user has no configure right and the
    topology command declared it all). ``translator`` covers the events exchange, the translator's queues and the
    audit's; ``pools`` each pool's partition, retry and hold queues."""
    if declare is None:
        declare = DeclareSettings().declare
    pools = pools or {}
    if declare:
        if translator:
            await declare_translator(broker)
        for pool, partitions in sorted(pools.items()):
            await declare_dispatcher_pool(broker, pool, partitions)
        if audit:
            await declare_audit(broker)
        return
    names = [translator_names()] if translator else []
    names += [pool_names(pool, partitions) for pool, partitions in sorted(pools.items())]
    names += [audit_names()] if audit else []
    await verify(connection, *names)


def make_broker(url: str, prefetch: int) -> RabbitBroker:
    return RabbitBroker(
        url,
        default_channel=Channel(prefetch_count=prefetch, publisher_confirms=True, on_return_raises=True),
        middlewares=(RabbitTelemetryMiddleware(),),
        graceful_timeout=20.0,
        log_level=10,  # FastStream's per-message lines at DEBUG: the services log outcomes themselves
        # its lines through the bridge's handler (okta_bridge.logs: JSON, masked), not a handler of its own on stdout
        logger=logging.getLogger("faststream.access.rabbit"),
    )


class PlanPublisher:
    """Plans go to their key's partition of the app's pool; the count is the connectors file's."""

    def __init__(self, publisher: Publisher, connectors: ConnectorsFile) -> None:
        self._publisher, self._connectors = publisher, connectors

    async def publish(self, plan: BaseModel, pool: str, context: Context | None = None) -> None:
        partition = partition_of(key_of(plan), self._connectors.partitions(pool))
        await self._publisher.publish(plan, exchange=PLANS_EXCHANGE.name, routing_key=partition_key(pool, partition),
                                      context=context)
        action = getattr(plan, "action", None)
        PLANS.labels(getattr(plan, "app_id", ""), getattr(action, "value", None) or action or
                     type(plan).__name__.removesuffix("Planned").lower()).inc()


@dataclass(frozen=True)
class QueueRoutes:
    """A work queue's delay queues, through the default exchange (the translator's and the audit's)."""
    work_queue: str

    def retry(self, tier: int, routing_key: str) -> tuple[str, str]:
        return "", retry_queue_name(self.work_queue, tier)

    def hold(self, routing_key: str) -> tuple[str, str]:
        return "", hold_queue_name(self.work_queue)

    def family(self, routing_key: str) -> str:
        return self.work_queue

    @property
    def label(self) -> str | None:
        return self.work_queue


@dataclass(frozen=True)
class PartitionRoutes:
    """A pool's delay queues, through exchanges that keep the message's partition routing key, so it comes back to
    its own partition. ``pool``: the metrics' label (``dispatcher.<pool>``; default: from the routing key)."""
    pool: str = ""

    @property
    def label(self) -> str | None:
        return f"dispatcher.{self.pool}" if self.pool else None

    def retry(self, tier: int, routing_key: str) -> tuple[str, str]:
        return plan_retry_exchange(tier).name, routing_key

    def hold(self, routing_key: str) -> tuple[str, str]:
        return PLAN_HOLD_EXCHANGE.name, routing_key

    def family(self, routing_key: str) -> str:
        """``default.003`` -> ``dispatcher.default``: the pool, not the partition (a bounded label)."""
        return self.label or f"dispatcher.{queue_family(routing_key)}"


class Republisher:
    """Sends a consumed message on to a retry tier, the hold queue or the dead letters; confirmed before the ack."""

    def __init__(self, publisher: Publisher, routes: QueueRoutes | PartitionRoutes, max_attempts: int) -> None:
        self._publisher, self._routes = publisher, routes
        self.max_attempts = max_attempts
        if routes.label:  # known label values exported at 0 from the start: a dashboard query has a series to show
            for counter in (RETRIES, HOLDS, DEAD_LETTERS):
                counter.labels(routes.label)

    async def retry(self, message: BaseModel, attempt: int, retry_after_s: float | None = None,
                    routing_key: str = "") -> None:
        """Exponential tiers with jitter below the tier's TTL; a server's Retry-After (or rate-limit reset) is a
        floor: the message comes back no earlier than that, plus jitter, in the first tier long enough."""
        tier = retry_tier_for(attempt)
        if retry_after_s:
            wait_ms = retry_after_s * 1000
            tier = next((i for i, ms in enumerate(RETRY_TIERS_MS) if ms >= wait_ms), len(RETRY_TIERS_MS) - 1)
            ttl_ms = min(wait_ms + random.uniform(0.0, 0.25) * max(wait_ms, 500), RETRY_TIERS_MS[tier])
        else:
            ttl_ms = RETRY_TIERS_MS[tier] * random.uniform(0.75, 1.0)  # per-message TTL below the queue's
        exchange, key = self._routes.retry(tier, routing_key)
        await self._publish(message, exchange, key, attempt, expiration_s=max(ttl_ms, 1) / 1000)
        RETRIES.labels(self._routes.family(routing_key)).inc()

    async def hold(self, message: BaseModel, attempt: int, routing_key: str = "", *,
                   held_since: float | None = None) -> None:
        """``held_since``: when the plan was first parked (:data:`~okta_bridge.bus.HELD_HEADER`, kept around the
        loop)."""
        exchange, key = self._routes.hold(routing_key)
        extra = {HELD_HEADER: held_since} if held_since is not None else None
        await self._publish(message, exchange, key, attempt, headers=extra)
        HOLDS.labels(self._routes.family(routing_key)).inc()

    async def back(self, body: bytes, routing_key: str, attempt: int, context: Context | None = None,
                   held_since: float | None = None) -> None:
        """A consumed plan back to its partition queue's tail, as it was (same attempt, still held if it was): for
        plans an ownership change cut off. A re-publish, unlike a requeue, does not count towards the queue's
        delivery limit."""
        headers: dict[str, Any] = {ATTEMPT_HEADER: attempt}
        if held_since is not None:
            headers[HELD_HEADER] = held_since
        await self._publisher.publish(body, exchange=PLANS_EXCHANGE.name, routing_key=routing_key,
                                      headers=headers, context=context)

    async def dead_letter(self, message: BaseModel | bytes, reason: str, attempt: int, source: str) -> None:
        """Only the message's ids, type and version are kept (:func:`okta_bridge.deadletters.minimal`): a replay
        plans again from Okta's current state and needs nothing else."""
        await self._publisher.publish(minimal(message), exchange=DLX.name, routing_key=source,
                                      headers={REASON_HEADER: reason[:1000], ATTEMPT_HEADER: attempt})
        DEAD_LETTERS.labels(self._routes.label or queue_family(source)).inc()

    async def _publish(self, message: BaseModel, exchange: str, routing_key: str, attempt: int,
                       expiration_s: float | None = None, headers: dict[str, Any] | None = None) -> None:
        headers = {ATTEMPT_HEADER: attempt, **(headers or {})}
        await self._publisher.publish(message, exchange=exchange, routing_key=routing_key, headers=headers,
                                      expiration_s=expiration_s)
