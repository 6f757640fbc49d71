"""The RabbitMQ topology as the real broker sees it: queue types and arguments, bindings, idempotent re-declaration,
and a publish that no queue accepts raising instead of vanishing."""

from __future__ import annotations

import json
import subprocess
from urllib.parse import unquote, urlsplit

import aio_pika
import pytest
from aio_pika.exceptions import DeliveryError

from okta_bridge.runtime import make_broker
from okta_bridge.topology import (
    AUDIT_EXCHANGE,
    DELIVERY_LIMIT,
    DLX,
    HOLD_TTL_MS,
    PLANS_EXCHANGE,
    RETRY_TIERS_MS,
    declare_dispatcher_pool,
    declare_translator,
    hold_queue_name,
    retry_queue_name,
)

pytestmark = pytest.mark.integration

WORK_QUEUES = ("translator.work", "dispatcher.default", "audit.records")


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


async def declare_all(url: str) -> None:
    broker = make_broker(url, 16)
    await broker.connect()
    try:
        await declare_translator(broker)
        await declare_dispatcher_pool(broker, "default")
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

    for work in ("translator.work", "dispatcher.default"):
        delays = {retry_queue_name(work, tier): ttl for tier, ttl in enumerate(RETRY_TIERS_MS)}
        delays[hold_queue_name(work)] = HOLD_TTL_MS
        assert hold_queue_name(work) == f"{work}.hold"
        for name, ttl in delays.items():
            args = found[name]["arguments"]
            assert found[name]["type"] == "quorum", found[name]
            assert args["x-message-ttl"] == ttl, (name, args)
            # expired messages go back to the work queue through the default exchange
            assert args["x-dead-letter-exchange"] == "", (name, args)
            assert args["x-dead-letter-routing-key"] == work, (name, args)
            assert args["x-dead-letter-strategy"] == "at-least-once", (name, args)
            assert args["x-overflow"] == "reject-publish", (name, args)  # required by at-least-once
    assert {retry_queue_name("dispatcher.default", t) for t in range(len(RETRY_TIERS_MS))} == {
        "dispatcher.default.retry.1s", "dispatcher.default.retry.4s", "dispatcher.default.retry.15s",
        "dispatcher.default.retry.60s", "dispatcher.default.retry.300s"}

    assert found["bridge.dead-letters"]["type"] == "quorum"
    assert "x-dead-letter-exchange" not in found["bridge.dead-letters"]["arguments"]  # the end of the line

    kinds = exchanges(rabbit_url)
    assert kinds["bridge.dlx"] == "topic"
    assert kinds["bridge.events"] == "topic"
    assert kinds["bridge.plans"] == "direct"
    assert kinds["bridge.audit"] == "fanout"

    bound = bindings(rabbit_url)
    assert ("bridge.dlx", "bridge.dead-letters", "#") in bound
    assert ("bridge.events", "translator.work", "okta.#") in bound
    assert ("bridge.plans", "dispatcher.default", "default") in bound
    assert any(src == "bridge.audit" and dst == "audit.records" for src, dst, _ in bound)


async def test_declaring_twice_is_idempotent_and_keeps_messages(rabbit_url):
    await declare_all(rabbit_url)
    broker = make_broker(rabbit_url, 16)
    await broker.connect()
    try:
        await broker.publish(b"kept", exchange=PLANS_EXCHANGE, routing_key="default", persist=True)
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
        queue = await channel.declare_queue("dispatcher.default", passive=True)
        message = await queue.get(timeout=5)
        assert message.body == b"kept"
        await message.ack()


async def test_passive_declares_find_every_queue(rabbit_url):
    await declare_all(rabbit_url)
    connection = await aio_pika.connect_robust(rabbit_url)
    async with connection:
        channel = await connection.channel()
        names = [*WORK_QUEUES, "bridge.dead-letters"]
        for work in ("translator.work", "dispatcher.default"):
            names += [retry_queue_name(work, t) for t in range(len(RETRY_TIERS_MS))] + [hold_queue_name(work)]
        for name in names:
            await channel.declare_queue(name, passive=True)
        for exchange in (DLX.name, PLANS_EXCHANGE.name, AUDIT_EXCHANGE.name, "bridge.events"):
            await channel.declare_exchange(exchange, passive=True)


async def test_plan_for_an_undeclared_pool_raises_instead_of_vanishing(rabbit_url):
    await declare_all(rabbit_url)
    broker = make_broker(rabbit_url, 16)
    await broker.connect()
    try:
        with pytest.raises(DeliveryError):
            await broker.publish(b"lost?", exchange=PLANS_EXCHANGE, routing_key="no-such-pool", persist=True,
                                 timeout=10)
        # the channel is still usable, and a declared pool accepts the same publish
        await broker.publish(b"routed", exchange=PLANS_EXCHANGE, routing_key="default", persist=True, timeout=10)
    finally:
        await broker.stop()
    assert queues(rabbit_url)["dispatcher.default"]["arguments"]  # still there
    connection = await aio_pika.connect_robust(rabbit_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("dispatcher.default", passive=True)
        assert (await queue.get(timeout=5)).body == b"routed"
