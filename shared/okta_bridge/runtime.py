"""What every service process needs: a broker that cannot silently drop a publish, and the re-publish helpers
(retry tiers, hold queue, dead letters) shared by the translator and the dispatcher.

Publishing is persistent with publisher confirms, and ``mandatory`` with ``on_return_raises``: a message that
no queue accepts raises instead of vanishing. Messages are acknowledged by hand only after their outcome
(a write to MongoDB or a confirmed re-publish) is durable.
"""

from __future__ import annotations

import random
from typing import Any

from faststream.rabbit import RabbitBroker
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from faststream.rabbit.schemas import Channel
from pydantic import BaseModel

from okta_bridge.topology import DLX, RETRY_TIERS_MS, hold_queue_name, retry_queue_name, retry_tier_for

__all__ = ["ATTEMPT_HEADER", "REASON_HEADER", "Republisher", "make_broker"]

ATTEMPT_HEADER = "x-bridge-attempt"
REASON_HEADER = "x-bridge-reason"


def make_broker(url: str, prefetch: int) -> RabbitBroker:
    return RabbitBroker(
        url,
        default_channel=Channel(prefetch_count=prefetch, publisher_confirms=True, on_return_raises=True),
        middlewares=(RabbitTelemetryMiddleware(),),
        graceful_timeout=20.0,
        log_level=10,  # FastStream's per-message lines at DEBUG: the services log outcomes themselves
    )


class Republisher:
    """Sends a consumed message on to a retry tier, the hold queue or the dead letters; confirmed before the ack."""

    def __init__(self, broker: RabbitBroker, work_queue: str, max_attempts: int) -> None:
        self._broker = broker
        self._work_queue = work_queue
        self.max_attempts = max_attempts

    async def retry(self, message: BaseModel, attempt: int, retry_after_s: float | None = None) -> None:
        """Exponential tiers with jitter below the tier's TTL; a server's Retry-After (or rate-limit reset) is a
        floor: the message comes back no earlier than that, plus jitter, in the first tier long enough."""
        tier = retry_tier_for(attempt)
        if retry_after_s:
            wait_ms = retry_after_s * 1000
            tier = next((i for i, ms in enumerate(RETRY_TIERS_MS) if ms >= wait_ms), len(RETRY_TIERS_MS) - 1)
            ttl_ms = min(wait_ms + random.uniform(0.0, 0.25) * max(wait_ms, 500), RETRY_TIERS_MS[tier])
        else:
            ttl_ms = RETRY_TIERS_MS[tier] * random.uniform(0.75, 1.0)  # per-message TTL below the queue's
        await self._publish(message, retry_queue_name(self._work_queue, tier), attempt, expiration=max(ttl_ms, 1) / 1000)

    async def hold(self, message: BaseModel, attempt: int) -> None:
        await self._publish(message, hold_queue_name(self._work_queue), attempt)

    async def dead_letter(self, message: BaseModel | bytes, reason: str, attempt: int, source: str) -> None:
        await self._broker.publish(
            message, exchange=DLX, routing_key=source, persist=True,
            headers={REASON_HEADER: reason[:1000], ATTEMPT_HEADER: attempt},
        )

    async def _publish(self, message: BaseModel, queue: str, attempt: int, expiration: float | None = None) -> None:
        headers: dict[str, Any] = {ATTEMPT_HEADER: attempt}
        await self._broker.publish(message, routing_key=queue, persist=True, headers=headers, expiration=expiration)
