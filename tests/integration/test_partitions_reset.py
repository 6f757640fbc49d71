"""``bridgectl partitions reset``: the one way to change a pool's partition count, refused while a
translator consumes, a dispatcher lives or a plan waits in the pool's queues (which another count would route to
another owner), then carried out; the services accept the new count and refuse the old one."""

from __future__ import annotations

import asyncio
import os

import aio_pika
import pytest
import yaml
from typer.testing import CliRunner

from okta_bridge.mongo import connect
from bridgectl.app import app as cli
from okta_bridge.runtime import make_broker
from okta_bridge.stores.partitions import MongoPartitions, PartitionCountChanged
from okta_bridge.topology import TRANSLATOR_QUEUE, declare_dispatcher_pool, declare_translator, partition_queue

pytestmark = pytest.mark.integration

MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
ORG = "https://acme.okta.com"


def connectors(path, partitions: int) -> str:
    path.write_text(yaml.safe_dump({
        "apps": [{"okta_app_id": "0oaresetapp000001xxx", "name": "reset", "base_url": "http://127.0.0.1:9/scim/v2/",
                  "auth": {"type": "none"}}],
        "pools": {"default": {"partitions": partitions}}}))
    return str(path)


def reset(monkeypatch, rabbit_url: str, db: str, file: str, *args: str):
    monkeypatch.setenv("RABBITMQ_URL", rabbit_url)
    monkeypatch.setenv("MONGODB_URL", MONGODB_URL)
    monkeypatch.setenv("MONGODB_DB", db)
    monkeypatch.setenv("OKTA_ORG_URL", ORG)
    monkeypatch.setenv("CONNECTORS_FILE", file)
    return CliRunner().invoke(cli, ["partitions", "reset", "--pool", "default", *args])


async def test_reset_is_refused_until_the_bridge_is_stopped_and_drained(rabbit_url, mongo_db, tmp_path,
                                                                        monkeypatch):
    client, db = connect(MONGODB_URL, mongo_db)
    store = MongoPartitions(db, ORG)
    await store.claim_count("default", 4)
    broker = make_broker(rabbit_url, 10)
    await broker.connect()
    await declare_translator(broker)
    await declare_dispatcher_pool(broker, "default", 4)
    connection = await aio_pika.connect(rabbit_url)
    channel = await connection.channel()
    try:
        eight = connectors(tmp_path / "eight.yaml", 8)
        # the file must say the new count first: every service reads it
        result = await asyncio.to_thread(reset, monkeypatch, rabbit_url, mongo_db,
                                         connectors(tmp_path / "four.yaml", 4), "--count", "8", "--yes")
        assert result.exit_code == 2 and "pools.default.partitions = 4" in result.output

        result = await asyncio.to_thread(reset, monkeypatch, rabbit_url, mongo_db, eight)
        assert result.exit_code == 2 and "--yes" in result.output

        # a plan still waits in partition 2 under the old count
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=partition_queue("default", 2).name)
        result = await asyncio.to_thread(reset, monkeypatch, rabbit_url, mongo_db, eight, "--yes")
        assert result.exit_code == 1
        assert "dispatcher.default.p002 holds 1 plan(s)" in result.output
        await (await channel.get_queue(partition_queue("default", 2).name)).purge()

        # a translator still consumes
        async def hold(message) -> None:  # a translator that takes and never acknowledges
            pass

        tag = await (await channel.get_queue(TRANSLATOR_QUEUE.name)).consume(hold)
        result = await asyncio.to_thread(reset, monkeypatch, rabbit_url, mongo_db, eight, "--yes")
        assert result.exit_code == 1 and "stop the translators" in result.output
        await (await channel.get_queue(TRANSLATOR_QUEUE.name)).cancel(tag)

        with pytest.raises(PartitionCountChanged, match="has 4 partitions, but the connectors file says 8"):
            await store.claim_count("default", 8)
        result = await asyncio.to_thread(reset, monkeypatch, rabbit_url, mongo_db, eight, "--yes")
        assert result.exit_code == 0, result.output
        assert "4 -> 8 partitions" in result.output
        await store.claim_count("default", 8)  # the services start with the new count ...
        with pytest.raises(PartitionCountChanged):  # ... and one still configured with the old is refused
            await store.claim_count("default", 4)
        state = await store.read("default")
        assert state.count == 8 and len(state.leases) == 8 and all(x.owner is None for x in state.leases)
    finally:
        await connection.close()
        await broker.stop()
        await client.close()
