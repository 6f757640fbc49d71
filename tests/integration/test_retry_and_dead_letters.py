"""Retry tiers, the hold queue and the dead letters on the real broker: the Republisher's messages come back to the
work queue after their TTL, dead letters carry their reason, and the broker dead-letters a poison message itself."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from urllib.parse import unquote, urlsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from okta_bridge.contracts import MappedAttribute, PlanAction, ScimOperationPlanned
from okta_bridge.bus import Publisher
from okta_bridge.deadletters import DeadLetterRecord, compact
from okta_bridge.runtime import ATTEMPT_HEADER, REASON_HEADER, QueueRoutes, Republisher, make_broker
from okta_bridge.topology import (
    DELIVERY_LIMIT,
    HOLD_TTL_MS,
    RETRY_TIERS_MS,
    declare_translator,
    hold_queue_name,
    retry_queue_name,
)

pytestmark = pytest.mark.integration

WORK = "translator.work"  # a pool's partitions take the same tiers through exchanges (test_topology.py)
DEAD = "bridge.dead-letters"


def plan(version: int = 1, user: str = "00u1xxxxxxxxxxxxxxxx") -> ScimOperationPlanned:
    return ScimOperationPlanned(
        org="https://acme.okta.com", app_id="0oaAPPxxxxxxxxxxxxxx", okta_user_id=user, version=version,
        action=PlanAction.UPSERT, unique_value=f"{user}@example.com", cause="application.user_membership.add",
        attributes=(MappedAttribute(path="name.givenName", value="Ann"),), event_uuid="ev-1")


@pytest.fixture
async def broker(rabbit_url):
    b = make_broker(rabbit_url, 16)
    await b.connect()
    await declare_translator(b)
    yield b
    await b.stop()


@pytest.fixture
async def publisher(broker):
    p = Publisher(await broker.connect())
    await p.start()
    yield p
    await p.close()


def republisher(publisher: Publisher) -> Republisher:
    return Republisher(publisher, QueueRoutes(WORK), max_attempts=5)


@pytest.fixture
async def channel(rabbit_url):
    connection = await aio_pika.connect_robust(rabbit_url)
    async with connection:
        yield await connection.channel()


async def get_within(channel, name: str, timeout: float, since: float | None = None,
                     ) -> tuple[AbstractIncomingMessage, float]:
    """Polls the queue (bounded): the first message and the seconds since ``since`` (default: now) it took."""
    queue: AbstractQueue = await channel.declare_queue(name, passive=True)
    start = time.monotonic() if since is None else since
    while time.monotonic() - start < timeout:
        message = await queue.get(fail=False, timeout=5)
        if message is not None:
            return message, time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"nothing arrived in {name} within {timeout}s")


async def empty_now(channel, name: str) -> bool:
    return await (await channel.declare_queue(name, passive=True)).get(fail=False, timeout=5) is None


def depth(url: str, name: str) -> int:
    """Messages in a queue, as rabbitmqctl counts them (the declare-ok count of a quorum queue can be stale)."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", unquote(urlsplit(url).path[1:]), "name",
                          "messages", "--formatter", "json"], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return {row["name"]: row["messages"] for row in json.loads(out)}[name]


async def eventually_depth(url: str, name: str, expected: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (found := depth(url, name)) != expected:
        assert time.monotonic() < deadline, f"{name} holds {found} messages, not {expected}"
        await asyncio.sleep(0.2)


def death_queues(message: AbstractIncomingMessage) -> list[str]:
    return [d["queue"] for d in message.headers.get("x-death", [])]


async def test_retry_goes_through_the_1s_tier_and_comes_back_with_the_attempt(publisher, broker, channel, rabbit_url):
    original = plan(version=7)
    sent = time.monotonic()
    await republisher(publisher).retry(original, attempt=1)
    assert await empty_now(channel, WORK)  # parked, not delivered right away

    message, waited = await get_within(channel, WORK, timeout=10, since=sent)
    assert 0.5 <= waited <= 8, waited  # per-message TTL 0.75..1 s, below the tier's 1 s
    assert message.headers[ATTEMPT_HEADER] == 1
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert retry_queue_name(WORK, 0) in death_queues(message)
    assert ScimOperationPlanned.model_validate_json(message.body) == original
    await message.ack()
    await eventually_depth(rabbit_url, retry_queue_name(WORK, 0), 0)  # nothing left behind in the tier


async def test_later_attempts_and_retry_after_choose_longer_tiers(publisher, broker, channel, rabbit_url):
    tiers = republisher(publisher)
    sent = time.monotonic()
    await tiers.retry(plan(user="00u2xxxxxxxxxxxxxxxx"), attempt=2)
    await tiers.retry(plan(user="00u3xxxxxxxxxxxxxxxx"), attempt=1, retry_after_s=10)  # Retry-After: 10 s -> 15 s tier
    await tiers.retry(plan(user="00u4xxxxxxxxxxxxxxxx"), attempt=40)
    for tier, user in ((2, "00u3xxxxxxxxxxxxxxxx"), (len(RETRY_TIERS_MS) - 1, "00u4xxxxxxxxxxxxxxxx")):  # long tiers: still parked there
        parked, _ = await get_within(channel, retry_queue_name(WORK, tier), timeout=5)
        assert ScimOperationPlanned.model_validate_json(parked.body).okta_user_id == user
        await parked.ack()

    message, waited = await get_within(channel, WORK, timeout=15, since=sent)  # the 4 s tier
    assert 2.5 <= waited <= 8, waited
    assert message.headers[ATTEMPT_HEADER] == 2
    assert retry_queue_name(WORK, 1) in death_queues(message)
    assert ScimOperationPlanned.model_validate_json(message.body).okta_user_id == "00u2xxxxxxxxxxxxxxxx"
    await message.ack()


async def test_retry_after_longer_than_every_tier_waits_in_the_longest_tier(publisher, broker, channel, rabbit_url):
    """A server asking for 10 minutes must not be retried after the attempt's 1 s tier."""
    await republisher(publisher).retry(plan(user="00u5xxxxxxxxxxxxxxxx"), attempt=1, retry_after_s=600)
    longest = retry_queue_name(WORK, len(RETRY_TIERS_MS) - 1)
    parked, _ = await get_within(channel, longest, timeout=5)
    assert ScimOperationPlanned.model_validate_json(parked.body).okta_user_id == "00u5xxxxxxxxxxxxxxxx"
    await parked.ack()


async def test_hold_comes_back_after_the_hold_ttl(publisher, broker, channel, rabbit_url):
    sent = time.monotonic()
    await republisher(publisher).hold(plan(version=3), attempt=2)
    assert await empty_now(channel, WORK)

    message, waited = await get_within(channel, WORK, timeout=HOLD_TTL_MS / 1000 + 15, since=sent)
    assert HOLD_TTL_MS / 1000 - 1 <= waited <= HOLD_TTL_MS / 1000 + 10, waited
    assert message.headers[ATTEMPT_HEADER] == 2
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert hold_queue_name(WORK) in death_queues(message)
    assert ScimOperationPlanned.model_validate_json(message.body).version == 3
    await message.ack()


async def test_dead_letter_lands_in_the_dead_letters_with_its_reason(publisher, broker, channel, rabbit_url):
    await republisher(publisher).dead_letter(
        plan(version=9), "SCIM 400: invalid userName " + "x" * 2000, attempt=4, source=WORK)
    await republisher(publisher).dead_letter(b"not json", "undecodable", 1, "translator.work")

    first, _ = await get_within(channel, DEAD, timeout=10)
    assert first.headers[REASON_HEADER].startswith("SCIM 400: invalid userName")
    assert len(first.headers[REASON_HEADER]) == 1000  # bounded
    assert first.headers[ATTEMPT_HEADER] == 4
    assert first.routing_key == WORK
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    # only what a replay needs: ids, type, version; no attribute values, no unique value
    kept = DeadLetterRecord.model_validate_json(first.body)
    assert (kept.kind, kept.app_id, kept.okta_user_id, kept.version) == ("ScimOperationPlanned", "0oaAPPxxxxxxxxxxxxxx", "00u1xxxxxxxxxxxxxxxx", 9)
    assert b"Ann" not in first.body and b"00u1@example.com" not in first.body
    await first.ack()

    second, _ = await get_within(channel, DEAD, timeout=10)
    assert DeadLetterRecord.model_validate_json(second.body).kind == "unreadable"
    assert b"not json" not in second.body and second.headers[REASON_HEADER] == "undecodable"
    assert second.routing_key == "translator.work"
    await second.ack()
    assert await empty_now(channel, WORK)


async def test_poison_message_is_dead_lettered_by_the_broker_after_the_delivery_limit(publisher, broker, channel, rabbit_url):
    await broker.publish(plan(version=1), exchange="bridge.events", routing_key="okta.event.x", persist=True)

    deliveries, last = 0, time.monotonic()
    deadline = time.monotonic() + 30
    queue = await channel.declare_queue(WORK, passive=True)
    while time.monotonic() < deadline and time.monotonic() - last < 2:  # until redeliveries stop
        message = await queue.get(fail=False, timeout=5)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        deliveries, last = deliveries + 1, time.monotonic()
        await message.nack(requeue=True)  # a consumer that crashes on it every time

    assert DELIVERY_LIMIT <= deliveries <= DELIVERY_LIMIT + 1, deliveries
    dead, _ = await get_within(channel, DEAD, timeout=10)
    assert dead.headers["x-first-death-reason"] == "delivery_limit"
    assert dead.headers["x-first-death-queue"] == WORK
    assert dead.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert ScimOperationPlanned.model_validate_json(dead.body).version == 1  # RabbitMQ keeps the message whole
    await dead.nack(requeue=True)
    # the audit-recorder's compaction rewrites it as its record: ids, type, version, the broker's reason (the nack
    # is not confirmed: compact until the letter is back)
    rewritten, deadline = 0, time.monotonic() + 10
    while not rewritten and time.monotonic() < deadline:
        rewritten = await compact(await broker.connect())
        await asyncio.sleep(0.1)
    assert rewritten == 1
    assert await compact(await broker.connect()) == 0  # already small: left as it is
    dead, _ = await get_within(channel, DEAD, timeout=10)
    kept = DeadLetterRecord.model_validate_json(dead.body)
    assert (kept.kind, kept.okta_user_id, kept.version) == ("ScimOperationPlanned", "00u1xxxxxxxxxxxxxxxx", 1)
    assert b"Ann" not in dead.body and b"@example.com" not in dead.body
    assert "delivery_limit" in dead.headers[REASON_HEADER] and dead.routing_key == WORK
    await dead.ack()
    assert await empty_now(channel, WORK)
    await eventually_depth(rabbit_url, WORK, 0)


async def test_messages_sent_by_the_broker_helper_are_persistent(publisher, broker, channel, rabbit_url):
    """Everything the services publish survives a broker restart: persistent, into durable quorum queues."""
    await publisher.publish(plan(), exchange="bridge.events", routing_key="okta.event.x")
    message, _ = await get_within(channel, WORK, timeout=10)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    await message.ack()


async def test_dead_letters_expire_after_the_retention(rabbit_url, monkeypatch):
    """DEAD_LETTERS_RETENTION_DAYS is the queue's x-message-ttl: RabbitMQ drops an older dead letter."""
    monkeypatch.setenv("DEAD_LETTERS_RETENTION_DAYS", str(1.5 / 86400))  # 1.5 s
    b = make_broker(rabbit_url, 16)
    connection = await b.connect()
    await declare_translator(b)
    rows = json.loads(subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", unquote(urlsplit(rabbit_url).path[1:]),
                                      "name", "arguments", "--formatter", "json"], check=True, capture_output=True,
                                     text=True, timeout=60).stdout)
    args = {name: value for row in rows if row["name"] == DEAD for name, _, value in row["arguments"]}
    assert args["x-message-ttl"] == 1500
    p = Publisher(connection)
    await p.start()
    try:
        await republisher(p).dead_letter(plan(version=2), "gave up", 3, WORK)
        channel = await connection.channel()
        queue = await channel.declare_queue(DEAD, passive=True)
        assert queue.declaration_result.message_count == 1
        await asyncio.sleep(2.5)
        # a quorum queue drops an expired message at its head when the queue is next used: a read finds nothing
        assert await queue.get(no_ack=False, fail=False) is None, "the dead letter outlived its retention"
        # a later start with another retention keeps the queue as it is (a declaration cannot change it)
        monkeypatch.setenv("DEAD_LETTERS_RETENTION_DAYS", "30")
        await declare_translator(b)
    finally:
        await p.close()
        await b.stop()
