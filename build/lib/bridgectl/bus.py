"""bridgectl's connections: MongoDB, and RabbitMQ as its own user (``bridge-operator``: see ``bridgectl topology
permissions``), publishing confirmed and auditing as ``operator-cli``."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

from okta_bridge.settings import BridgeSettings, OktaSettings


@contextlib.asynccontextmanager
async def mongo() -> AsyncIterator:
    from okta_bridge.mongo import connect

    base = BridgeSettings()
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    try:
        yield db
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def operator_bus(service: str = "operator-cli") -> AsyncIterator[tuple]:
    """(publisher, audit): the operator's publishes go out as the services' do (confirmed, persistent, mandatory);
    audited as ``service`` (the console passes ``console``)."""
    from okta_bridge.audit import AuditPublisher
    from okta_bridge.bus import Publisher
    from okta_bridge.runtime import make_broker

    base, org = BridgeSettings(), OktaSettings().org_url
    broker = make_broker(base.rabbitmq_url.get_secret_value(), 1)
    publisher = Publisher(await broker.connect())
    await publisher.start()
    try:
        yield publisher, AuditPublisher(publisher, service, org)
    finally:
        await publisher.close()
        await broker.stop()
