"""Each service as its own RabbitMQ user with the documented rights only (``okta_bridge.topology.permissions_for``):
the topology command declares everything as the topology user; then every service's start-up check (passive), its
consume and publish paths work, and declaring (or touching another service's queues) is refused."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused

from okta_bridge.bus import Publisher
from okta_bridge.deadletters import DeadLetters, compact
from okta_bridge.runtime import PartitionRoutes, QueueRoutes, Republisher, make_broker, prepare_topology
from okta_bridge.topology import (AUDIT_EXCHANGE, AUDIT_QUEUE, DLX, EVENTS_EXCHANGE, PLANS_EXCHANGE, TRANSLATOR_QUEUE,
                                  TopologyMissing, audit_names, declare_audit, declare_dispatcher_pool,
                                  declare_translator, partition_key, permissions_for, plan_retry_exchange, pool_names,
                                  translator_names, verify)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4


def _ctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def users(rabbit_url):
    """One RabbitMQ user per service in the test's vhost, with exactly the documented permissions."""
    vhost = unquote(urlsplit(rabbit_url).path[1:])
    parts = urlsplit(rabbit_url)
    suffix = uuid.uuid4().hex[:6]
    urls: dict[str, str] = {}
    for role, permission in permissions_for(["default"]).items():
        name, password = f"{role}-{suffix}", secrets.token_hex(8)
        _ctl("add_user", name, password)
        _ctl("set_permissions", "-p", vhost, name, permission.configure, permission.write, permission.read)
        urls[role] = urlunsplit((parts.scheme, f"{name}:{password}@{parts.hostname}:{parts.port or 5672}",
                                 parts.path, "", ""))
    yield urls
    for role in urls:
        _ctl("delete_user", f"{role}-{suffix}")


def connectors_file(tmp_path: Path) -> Path:
    """An app whose SCIM secret is NOT in the environment: the topology command does not need it."""
    path = tmp_path / "connectors.yaml"
    path.write_text(f"""apps:
  - okta_app_id: 0oaPermTest000000001
    name: perm
    base_url: http://127.0.0.1:9/scim/v2
    auth: {{type: header, value_env: PERM_TEST_UNSET_TOKEN_{uuid.uuid4().hex[:6].upper()}, value_prefix: "Bearer "}}
pools:
  default: {{partitions: {PARTITIONS}}}
""")
    return path


def run_topology(url: str, connectors: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RABBITMQ_URL": url, "CONNECTORS_FILE": str(connectors),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT / "services")])}
    return subprocess.run([sys.executable, "-m", "bridgectl", "topology", "apply"], env=env, capture_output=True,
                          text=True, timeout=120)


class Service:
    """What a service's composition root opens: a FastStream broker's connection and a confirmed publisher."""

    def __init__(self, url: str) -> None:
        self.broker = make_broker(url, 16)

    async def __aenter__(self) -> "Service":
        self.connection = await self.broker.connect()
        self.publisher = Publisher(self.connection)
        await self.publisher.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.publisher.close()
        await self.broker.stop()

    async def take_body(self, queue_name: str, body: bytes, most: int = 50) -> bool:
        """Takes messages from the queue until one with this body (others may be waiting there)."""
        for _ in range(most):
            if (await self.take(queue_name)).body == body:
                return True
        return False

    async def take(self, queue_name: str, timeout: float = 20.0) -> aio_pika.abc.AbstractIncomingMessage:
        channel = await self.connection.channel()
        queue = await channel.declare_queue(queue_name, passive=True)
        got = asyncio.get_running_loop().create_future()

        async def on_message(message) -> None:
            if not got.done():
                got.set_result(message)
            else:
                await message.nack(requeue=True)

        tag = await queue.consume(on_message)
        try:
            message = await asyncio.wait_for(got, timeout)
            await message.ack()
            return message
        finally:
            await queue.cancel(tag)
            await channel.close()


async def refused(coro) -> bool:
    try:
        await coro
    except ChannelAccessRefused:
        return True
    except aio_pika.exceptions.ChannelClosed as exc:
        return "ACCESS_REFUSED" in str(exc)
    return False


async def test_services_with_the_documented_rights_only_work_and_cannot_declare(rabbit_url, users, tmp_path):
    pools = {"default": PARTITIONS}
    # before the topology command a service without configure rights stops with a clear message
    async with Service(users["bridge-translator"]) as translator:
        with pytest.raises(TopologyMissing, match="bridgectl topology apply"):
            await prepare_topology(translator.broker, translator.connection, translator=True, pools=pools,
                                   declare=False)
    # a service user cannot declare it either
    async with Service(users["bridge-dispatcher"]) as dispatcher:
        assert await refused(declare_dispatcher_pool(dispatcher.broker, "default", PARTITIONS))

    done = run_topology(users["bridge-topology"], connectors_file(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "pool default (4 partitions)" in done.stdout
    assert run_topology(users["bridge-topology"], connectors_file(tmp_path)).returncode == 0  # idempotent

    async with Service(users["bridge-poller"]) as poller, Service(users["bridge-translator"]) as translator, \
            Service(users["bridge-dispatcher"]) as dispatcher, Service(users["bridge-audit"]) as audit:
        # each service's start-up check, passive, as BROKER_DECLARE=false runs it
        await prepare_topology(poller.broker, poller.connection, translator=True, declare=False)
        await prepare_topology(translator.broker, translator.connection, translator=True, pools=pools, declare=False)
        await prepare_topology(dispatcher.broker, dispatcher.connection, translator=True, pools=pools, declare=False)
        await prepare_topology(audit.broker, audit.connection, audit=True, declare=False)
        # and none of them may declare (no configure right)
        assert await refused(declare_translator(poller.broker))
        assert await refused(declare_translator(translator.broker))
        assert await refused(declare_audit(audit.broker))

        # poller: an event to the translator, its audit, a malformed event to the dead letters
        await poller.publisher.publish(b'{"e": 1}', exchange=EVENTS_EXCHANGE.name, routing_key="okta.event.x")
        await poller.publisher.publish(b'{"a": 1}', exchange=AUDIT_EXCHANGE.name, routing_key="")
        await poller.publisher.publish(b'{"bad": 1}', exchange=DLX.name, routing_key="queue-poller.malformed")
        # translator: consumes it, sends it to a retry tier (default exchange), back to its queue after the TTL
        assert (await translator.take(TRANSLATOR_QUEUE.name)).body == b'{"e": 1}'
        tiers = Republisher(translator.publisher, QueueRoutes(TRANSLATOR_QUEUE.name), 10)
        await tiers._publish(b'{"e": 1}', "", "translator.work.retry.1s", 1, expiration_s=0.05)
        assert (await translator.take(TRANSLATOR_QUEUE.name)).body == b'{"e": 1}'
        # translator: a plan to its partition; the dispatcher consumes it
        await translator.publisher.publish(b'{"p": 1}', exchange=PLANS_EXCHANGE.name,
                                           routing_key=partition_key("default", 2))
        assert (await dispatcher.take("dispatcher.default.p002")).body == b'{"p": 1}'
        # dispatcher: a retry tier and the hold queue bring it back to its partition; a write-back to the translator
        routes = Republisher(dispatcher.publisher, PartitionRoutes(), 15)
        await routes._publish(b'{"p": 2}', *routes._routes.retry(0, partition_key("default", 2)), 1, expiration_s=0.05)
        assert (await dispatcher.take("dispatcher.default.p002")).body == b'{"p": 2}'
        await routes.dead_letter(b'{"p": 3}', "permanent", 1, "scim-dispatcher")
        await dispatcher.publisher.publish(b'{"w": 1}', exchange=EVENTS_EXCHANGE.name, routing_key="okta.writeback")
        assert (await translator.take(TRANSLATOR_QUEUE.name)).body == b'{"w": 1}'
        # audit-recorder: consumes the audit, a failed write waits in its retry tier
        assert (await audit.take(AUDIT_QUEUE.name)).body == b'{"a": 1}'
        audit_tiers = Republisher(audit.publisher, QueueRoutes(AUDIT_QUEUE.name), 30)
        await audit_tiers._publish(b'{"a": 2}', "", "audit.records.retry.1s", 1, expiration_s=0.05)
        assert (await audit.take(AUDIT_QUEUE.name)).body == b'{"a": 2}'

        # audit-recorder: rewrites a dead letter that arrived whole (here the poller's unreadable body) as its record
        assert await compact(audit.connection) == 1

        # what a service may not do: read another's queue, publish to another's exchange
        assert await refused(translator.take(AUDIT_QUEUE.name, timeout=2))
        assert await refused(audit.take("dispatcher.default.p000", timeout=2))
        assert await refused(dispatcher.take(TRANSLATOR_QUEUE.name, timeout=2))
        poller_only = Publisher(poller.connection)
        await poller_only.start()
        assert await refused(poller_only.publish(b"{}", exchange=PLANS_EXCHANGE.name,
                                                 routing_key=partition_key("default", 0)))

    # the operator's user reads the dead letters (the poller's and the dispatcher's)
    letters = await DeadLetters(users["bridge-operator"], "https://acme.okta.com", "test").list()
    assert sorted(letter.source for letter in letters) == ["queue-poller.malformed", "scim-dispatcher"]

    # the web console's own user, with the operator's rights: it reads the dead letters too (and they stay)
    letters = await DeadLetters(users["bridge-console"], "https://acme.okta.com", "test").list()
    assert sorted(letter.source for letter in letters) == ["queue-poller.malformed", "scim-dispatcher"]
    async with Service(users["bridge-console"]) as console, Service(users["bridge-translator"]) as translator, \
            Service(users["bridge-dispatcher"]) as dispatcher, Service(users["bridge-audit"]) as audit:
        # its passive checks need no right; declaring is refused
        await verify(console.connection, audit_names(), translator_names(), pool_names("default", PARTITIONS))
        assert await refused(declare_audit(console.broker))  # (the broker's channel is closed after it)
        # what its pages publish: a "look again" event or a sync (provision) to the translator, a group plan (replay)
        # to its partition, its audit records
        await console.publisher.publish(b'{"c": "event"}', exchange=EVENTS_EXCHANGE.name,
                                        routing_key="okta.event.console.provision")
        assert (await translator.take(TRANSLATOR_QUEUE.name)).body == b'{"c": "event"}'
        await console.publisher.publish(b'{"c": "plan"}', exchange=PLANS_EXCHANGE.name,
                                        routing_key=partition_key("default", 3))
        assert (await dispatcher.take("dispatcher.default.p003")).body == b'{"c": "plan"}'
        await console.publisher.publish(b'{"c": "audit"}', exchange=AUDIT_EXCHANGE.name, routing_key="")
        assert await audit.take_body(AUDIT_QUEUE.name, b'{"c": "audit"}')
        # what it may not do: consume a service's queue, publish past the pipeline's own paths
        for queue in (TRANSLATOR_QUEUE.name, AUDIT_QUEUE.name, "dispatcher.default.p000", "plans.default.hold"):
            assert await refused(console.take(queue, timeout=2)), queue
        for exchange, routing_key in (("", TRANSLATOR_QUEUE.name), (DLX.name, "console"),
                                      (plan_retry_exchange(0).name, partition_key("default", 0))):
            one_shot = Publisher(console.connection)  # a refused publish closes its channel
            await one_shot.start()
            assert await refused(one_shot.publish(b"{}", exchange=exchange, routing_key=routing_key)), exchange
