"""Upgrading from one queue per pool to partitions: plans still waiting in the old ``dispatcher.<pool>`` queue (and
those its old retry tiers and hold queue send back there) are moved to their key's partition, each acknowledged only
once the broker confirmed it in its new queue. Nothing to do on a fresh installation: the queue does not exist."""

from __future__ import annotations

import logging

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from okta_bridge.runtime import PlanPublisher
from okta_bridge.topology import legacy_pool_queue
from scim_dispatcher.consume import PLAN_MESSAGES

__all__ = ["drain_legacy_queue"]

log = logging.getLogger("scim_dispatcher")


async def drain_legacy_queue(connection: AbstractRobustConnection, plans: PlanPublisher, pool: str) -> bool:
    """Starts moving the old queue's plans to the partitions; False when there is no old queue."""
    probe = await connection.channel()
    try:
        await probe.declare_queue(legacy_pool_queue(pool), passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return False
    finally:
        if not probe.is_closed:
            await probe.close()
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=50)
    queue = await channel.declare_queue(legacy_pool_queue(pool), passive=True)

    async def move(message: AbstractIncomingMessage) -> None:
        try:
            plan = PLAN_MESSAGES.validate_json(message.body)
        except ValidationError:
            await message.reject(requeue=False)  # to the dead letters, as the old queue's arguments say
            return
        await plans.publish(plan, pool)
        await message.ack()

    await queue.consume(move)
    log.info("moving the plans of the old queue %s to the pool's partitions", legacy_pool_queue(pool))
    return True
