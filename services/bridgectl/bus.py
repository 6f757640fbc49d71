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
async def okta_client(scopes: str = "drift", settings: OktaSettings | None = None) -> AsyncIterator:
    """An Okta client for one operator action (bridgectl, the console), inside the org-wide budget of concurrent
    Okta requests (``OKTA_MAX_CONCURRENT_REQUESTS``, :mod:`okta_bridge.permits`) that the pollers and translators
    share: the action is a holder of the budget while it runs and gives its permits back when it ends."""
    import asyncio
    import os
    import socket
    import uuid

    from okta_bridge.okta_auth import okta_client_from_settings, scopes_for
    from okta_bridge.permits import okta_budget
    from okta_bridge.stores.permits import MongoPermits

    settings = settings or OktaSettings()
    async with mongo() as db:
        me = f"operator@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        budget = okta_budget(MongoPermits(db, settings.org_url), me, settings.max_concurrent_requests,
                             settings.request_timeout_s)
        stop = asyncio.Event()
        renewing = asyncio.get_running_loop().create_task(budget.run(stop))
        client = okta_client_from_settings(settings, scopes_for(scopes), gate=lambda: budget.slot("requests"))
        try:
            yield client
        finally:
            await client.aclose()
            stop.set()
            await renewing


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
