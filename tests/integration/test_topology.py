"""The RabbitMQ topology as the real broker sees it: queue types and arguments, bindings, idempotent re-declaration,
and a publish that no queue accepts raising instead of vanishing."""

from __future__ import annotations

import asyncio
import json
import subprocess
from urllib.parse import unquote, urlsplit

import aio_pika
import pytest
from aio_pika.exceptions import DeliveryError

from okta_bridge.bus import Publisher
from okta_bridge.runtime import ATTEMPT_HEADER, PartitionRoutes, Republisher, make_broker
from okta_bridge.topology import (
    AUDIT_EXCHANGE,
    DELIVERY_LIMIT,
    DLX,
    HOLD_TTL_MS,
    PLAN_HOLD_EXCHANGE,
    PLANS_EXCHANGE,
    RETRY_TIERS_MS,
    declare_dispatcher_pool,
    declare_translator,
    hold_queue_name,
    partition_key,
    partition_of,
    plan_retry_exchange,
    retry_queue_name,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4
PARTITION_QUEUES = tuple(f"dispatcher.default.p{p:03d}" for p in range(PARTITIONS))
WORK_QUEUES = ("translator.work", "audit.records", *PARTITION_QUEUES)


def vhost_of(url: str) -> str:
    return unquote(urlsplit(url).path[1:])


def ctl_json(*args: str) -> list[dict]:
    out = subprocess.run(["rabbitmqctl", "-q", *args, "--formatter", "json"], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    return json.loads(out) if out.strip() else []


def queues(url: str) -> dict[str, dict]:
    rows = ctl_json("list_queues", "-p", vhost_of(url), "name", "type", "durable", "arguments")
    return {r["name"]: {**r, "arguments": {name: value for name, _, value in r["arguments"]}} for r in rows}


def bindings(url: str) -> set[tuple[str, str, str]]:
    rows = ctl_json("list_bindings", "-p", vhost_of(url), "source_name", "destination_name", "routing_key")
    return {(r["source_name"], r["destination_name"], r["routing_key"]) for r in rows}


def exchanges(url: str) -> dict[str, str]:
    rows = ctl_json("list_exchanges", "-p", vhost_of(url), "name", "type", "durable")
    return {r["name"]: r["type"] for r in rows if r["durable"]}


async def take(queue, count: int = 1, timeout: float = 20.0) -> list[bytes]:
    """Consumes ``count`` messages (basic.get is refused by a single-active-consumer queue) and acks them."""
    bodies: list[bytes] = []
    done = asyncio.get_running_loop().create_future()

    async def on_message(message) -> None:
        bodies.append(message.body)
        await message.ack()
        if len(bodies) >= count and not done.done():
            done.set_result(None)

    tag = await queue.consume(on_message)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        await queue.cancel(tag)
    return bodies


async def declare_all(url: str) -> None:
    broker = make_broker(url, 16)
    await broker.connect()
    try:
        await declare_translator(broker)
        await declare_dispatcher_pool(broker, "default", PARTITIONS)
    finally:
        await broker.stop()


async def test_work_delay_and_dead_letter_queues_have_the_documented_arguments(rabbit_url):
    await declare_all(rabbit_url)
    found = queues(rabbit_url)

    for name in WORK_QUEUES:
        q = found[name]
        assert q["type"] == "quorum" and q["durable"], q
        assert q["arguments"]["x-delivery-limit"] == DELIVERY_LIMIT, q
        assert q["arguments"]["x-dead-letter-exchange"] == DLX.name == "bridge.dlx", q
    for name in PARTITION_QUEUES:  # the cheap second guard: one consumer at a time per partition
        assert found[name]["arguments"]["x-single-active-consumer"] is True

    def delay_args(name: str, ttl: int) -> dict:
        args = found[name]["arguments"]
        assert found[name]["type"] == "quorum", found[name]
        assert args["x-message-ttl"] == ttl, (name, args)
        assert args["x-dead-letter-strategy"] == "at-least-once", (name, args)
        assert args["x-overflow"] == "reject-publish", (name, args)  # required by at-least-once
        return args

    work = "translator.work"  # back to the work queue through the default exchange
    delays = {retry_queue_name(work, tier): ttl for tier, ttl in enumerate(RETRY_TIERS_MS)}
    delays[hold_queue_name(work)] = HOLD_TTL_MS
    for name, ttl in delays.items():
        args = delay_args(name, ttl)
        assert args["x-dead-letter-exchange"] == "" and args["x-dead-letter-routing-key"] == work, (name, args)
    # a pool's delay queues send a plan back to its own partition: bridge.plans, with the message's routing key
    pool = {retry_queue_name("plans.default", tier): ttl for tier, ttl in enumerate(RETRY_TIERS_MS)}
    pool[hold_queue_name("plans.default")] = HOLD_TTL_MS
    for name, ttl in pool.items():
        args = delay_args(name, ttl)
        assert args["x-dead-letter-exchange"] == "bridge.plans" and "x-dead-letter-routing-key" not in args
    assert set(pool) == {"plans.default.retry.1s", "plans.default.retry.4s", "plans.default.retry.15s",
                         "plans.default.retry.60s", "plans.default.retry.300s", "plans.default.hold"}

    assert found["bridge.dead-letters"]["type"] == "quorum"
    assert "x-dead-letter-exchange" not in found["bridge.dead-letters"]["arguments"]  # the end of the line

    kinds = exchanges(rabbit_url)
    assert kinds["bridge.dlx"] == "topic"
    assert kinds["bridge.events"] == "topic"
    assert kinds["bridge.plans"] == "direct"
    assert kinds["bridge.audit"] == "fanout"
    assert kinds["bridge.plans.hold"] == "topic" and kinds["bridge.plans.retry.4s"] == "topic"

    bound = bindings(rabbit_url)
    assert ("bridge.dlx", "bridge.dead-letters", "#") in bound
    assert ("bridge.events", "translator.work", "okta.#") in bound
    for p in range(PARTITIONS):
        assert ("bridge.plans", f"dispatcher.default.p{p:03d}", f"default.{p:03d}") in bound
    assert ("bridge.plans.retry.4s", "plans.default.retry.4s", "default.*") in bound
    assert ("bridge.plans.hold", "plans.default.hold", "default.*") in bound
    assert any(src == "bridge.audit" and dst == "audit.records" for src, dst, _ in bound)


async def test_a_plan_back_from_a_retry_tier_or_the_hold_queue_returns_to_its_own_partition(rabbit_url):
    await declare_all(rabbit_url)
    connection = await aio_pika.connect_robust(rabbit_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        for exchange_name, body in ((plan_retry_exchange(0).name, b"retried"), (PLAN_HOLD_EXCHANGE.name, b"held")):
            exchange = await channel.get_exchange(exchange_name)
            await exchange.publish(aio_pika.Message(body, expiration=0.2), routing_key=partition_key("default", 2))
        queue = await channel.declare_queue("dispatcher.default.p002", passive=True)
        assert set(await take(queue, 2)) == {b"retried", b"held"}
        for other in (0, 1, 3):
            empty = await channel.declare_queue(f"dispatcher.default.p{other:03d}", passive=True)
            assert empty.declaration_result.message_count == 0


async def test_a_plan_returned_to_its_partition_again_and_again_is_never_dead_lettered(rabbit_url):
    """What a dispatcher does with a plan an ownership change cut off (``Republisher.back`` and then an ack): the plan
    goes back to its own partition with its attempt, and returning it more often than the delivery limit does not
    make the broker dead-letter it (a requeue would: each one counts)."""
    await declare_all(rabbit_url)
    broker = make_broker(rabbit_url, 16)
    connection = await broker.connect()
    publisher = Publisher(connection)
    await publisher.start()
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("dispatcher.default.p002", passive=True)
        republisher = Republisher(publisher, PartitionRoutes(), max_attempts=5)
        await publisher.publish(b'{"plan": 1}', exchange=PLANS_EXCHANGE.name,
                                routing_key=partition_key("default", 2), headers={ATTEMPT_HEADER: 3})
        for _ in range(DELIVERY_LIMIT + 2):
            got = asyncio.get_running_loop().create_future()

            async def on_message(m, got=got) -> None:
                if not got.done():
                    got.set_result(m)

            tag = await queue.consume(on_message)
            message = await asyncio.wait_for(got, 20)
            await queue.cancel(tag)
            assert message.body == b'{"plan": 1}' and message.headers[ATTEMPT_HEADER] == 3
            assert int(message.headers.get("x-delivery-count", 0)) == 0  # a fresh message every time
            await republisher.back(message.body, message.routing_key, 3)
            await message.ack()
        assert await take(queue, 1) == [b'{"plan": 1}']
        for other in (0, 1, 3):
            empty = await channel.declare_queue(f"dispatcher.default.p{other:03d}", passive=True)
            assert empty.declaration_result.message_count == 0
    finally:
        await publisher.close()
        await broker.stop()


async def test_declaring_twice_is_idempotent_and_keeps_messages(rabbit_url):
    await declare_all(rabbit_url)
    broker = make_broker(rabbit_url, 16)
    await broker.connect()
    try:
        await broker.publish(b"kept", exchange=PLANS_EXCHANGE, routing_key="default.001", persist=True)
    finally:
        await broker.stop()

    before = queues(rabbit_url)
    await declare_all(rabbit_url)  # a second service start (or a second replica) must not fail
    await declare_all(rabbit_url)
    after = queues(rabbit_url)
    assert {n: q["arguments"] for n, q in after.items()} == {n: q["arguments"] for n, q in before.items()}

    connection = await aio_pika.connect_robust(rabbit_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("dispatcher.default.p001", passive=True)
        assert await take(queue) == [b"kept"]


async def test_passive_declares_find_every_queue(rabbit_url):
    await declare_all(rabbit_url)
    connection = await aio_pika.connect_robust(rabbit_url)
    async with connection:
        channel = await connection.channel()
        names = [*WORK_QUEUES, "bridge.dead-letters"]
        for work in ("translator.work", "plans.default"):
            names += [retry_queue_name(work, t) for t in range(len(RETRY_TIERS_MS))] + [hold_queue_name(work)]
        for name in names:
            await channel.declare_queue(name, passive=True)
        for exchange in (DLX.name, PLANS_EXCHANGE.name, AUDIT_EXCHANGE.name, "bridge.events", "bridge.plans.hold"):
            await channel.declare_exchange(exchange, passive=True)


async def test_plan_for_an_undeclared_pool_raises_instead_of_vanishing(rabbit_url):
    await declare_all(rabbit_url)
    broker = make_broker(rabbit_url, 16)
    await broker.connect()
    try:
        with pytest.raises(DeliveryError):
            await broker.publish(b"lost?", exchange=PLANS_EXCHANGE, routing_key="no-such-pool.000", persist=True,
                                 timeout=10)
        # the channel is still usable, and a declared partition accepts the same publish
        await broker.publish(b"routed", exchange=PLANS_EXCHANGE, routing_key="default.000", persist=True, timeout=10)
    finally:
        await broker.stop()
    connection = await aio_pika.connect_robust(rabbit_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("dispatcher.default.p000", passive=True)
        assert await take(queue) == [b"routed"]


def test_keys_hash_to_partitions_stably_and_evenly():
    assert partition_of("0oa1|00u1", 8) == partition_of("0oa1|00u1", 8)  # no per-process hash seed
    counts = [0] * 8
    for i in range(8000):
        counts[partition_of(f"0oa1|00u{i:06d}", 8)] += 1
    assert min(counts) > 800 and max(counts) < 1200, counts
