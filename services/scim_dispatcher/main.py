"""scim-dispatcher composition root: one consumer per served pool; outcomes -> links, audit, retry/hold/DLQ."""

from __future__ import annotations

import asyncio
import logging

from faststream import AckPolicy, FastStream
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from prometheus_client import start_http_server
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from okta_bridge.audit import BrokerAudit
from okta_bridge.connectors import load_connectors
from okta_bridge.contracts import MembershipPlanned, TargetValuesObserved
from okta_bridge.stores.groups import GroupState
from okta_bridge.stores.leases import Leases
from okta_bridge.logs import register_secret, setup_logging, register_settings_secrets
from okta_bridge.mongo import connect
from okta_bridge.runtime import ATTEMPT_HEADER, Republisher, make_broker
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.telemetry import setup_tracing, shutdown_tracing
from okta_bridge.topology import (EVENTS_EXCHANGE, PLANS_EXCHANGE, WRITEBACK_ROUTING_KEY, declare_dispatcher_pool,
                                  declare_translator, dispatcher_queue)
from okta_bridge.stores.links import MongoLinks
from okta_bridge.stores.group_links import MongoGroupLinks
from scim_dispatcher.adapters.scim_groups import ScimGroupClient
from scim_dispatcher.adapters.traced_http import traced_client
from scim_dispatcher.circuit import Circuits
from scim_dispatcher.consume import DispatcherPorts, handle_plan
from scim_dispatcher.groups import GroupDispatcher
from scim_dispatcher.handlers import Dispatcher

log = logging.getLogger("scim_dispatcher")


class DispatcherSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", extra="ignore")

    pools: str = Field(default="default", description="comma-separated pools this dispatcher serves")
    max_attempts: int = Field(default=15, description="transient failures before a plan is dead-lettered")
    probe_interval_s: float = 10.0
    circuit_failures: int = Field(default=5, ge=1, description="transient failures in a row that open the circuit")
    metrics_port: int = Field(default=9108, description="Prometheus metrics (0: off)")
    lease_ttl_s: float = Field(default=60.0, description="a dead holder's (app, user) lease frees after this; "
                                                         "longer than any one plan's SCIM calls")
    group_lease_ttl_s: float = Field(default=120.0, description="a dead holder's group lease frees after this")


class BrokerOutbox:
    def __init__(self, broker: RabbitBroker) -> None:
        self._broker = broker

    async def plan(self, plan: MembershipPlanned, pool: str) -> None:
        await self._broker.publish(plan, exchange=PLANS_EXCHANGE, routing_key=pool, persist=True)

    async def observed(self, values: TargetValuesObserved) -> None:
        await self._broker.publish(values, exchange=EVENTS_EXCHANGE, routing_key=WRITEBACK_ROUTING_KEY, persist=True)


def build() -> FastStream:
    setup_logging("scim-dispatcher")
    setup_tracing("scim-dispatcher")
    base, okta, cfg = BridgeSettings(), OktaSettings(), DispatcherSettings()
    connectors = load_connectors(base.connectors_file)
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())
    pools = [p.strip() for p in cfg.pools.split(",") if p.strip()]
    apps = {a.okta_app_id: a for a in connectors.apps if a.pool in pools}
    for app in apps.values():
        for value in app.auth_headers().values():
            register_secret(value)
            register_secret(value.split(" ", 1)[-1])
    broker = make_broker(base.rabbitmq_url.get_secret_value(), base.prefetch)
    stream = FastStream(broker)
    circuits = Circuits(cfg.probe_interval_s, cfg.circuit_failures, {a.okta_app_id: a.name for a in apps.values()})
    ports: list[DispatcherPorts] = []  # filled on start-up: nothing connects at import or build time
    closing: list = []

    @stream.on_startup
    async def connect_stores() -> None:
        client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
        http = traced_client()
        clients = {a.okta_app_id: ScimGroupClient(http, a.base_url, a.version, headers=a.auth_headers(),
                                                  timeout_s=a.timeout_s, unique_field=a.unique_user_field,
                                                  deactivate_with=a.deactivate_with, group_update=a.group_update)
                   for a in apps.values()}
        links, group_links, group_state = MongoLinks(db, okta.org_url), MongoGroupLinks(db, okta.org_url), \
            GroupState(db, okta.org_url)
        await group_links.ensure_indexes()
        await group_state.ensure_indexes()
        # a lease outlives the longest apply (lookup, write, read back at the app's timeout) by a margin
        ttl = max([cfg.lease_ttl_s, *(4 * a.timeout_s for a in apps.values())])
        leases = Leases.keyed(db, ttl_s=ttl)
        await leases.ensure_indexes()
        ports.append(DispatcherPorts(
            apps=apps, users=Dispatcher(apps, clients, links, leases),
            groups=GroupDispatcher(apps, clients, group_state, group_links, links,
                                   Leases.keyed(db, ttl_s=max(ttl, cfg.group_lease_ttl_s))),
            group_state=group_state, circuits=circuits, audit=BrokerAudit(broker, "scim-dispatcher", okta.org_url),
            outbox=BrokerOutbox(broker)))
        closing.extend([http, client])

    @stream.on_startup
    async def metrics() -> None:
        if cfg.metrics_port:
            try:
                start_http_server(cfg.metrics_port)
                log.info("metrics on :%d/metrics", cfg.metrics_port)
            except OSError as exc:  # e.g. a second dispatcher on the same host
                log.warning("metrics port %d not available (%s): metrics off", cfg.metrics_port, exc)

    @stream.on_startup
    async def declare() -> None:
        await broker.connect()
        await declare_translator(broker)  # write-backs go to the translator's queue
        for pool in pools:
            await declare_dispatcher_pool(broker, pool)
        log.info("serving pools %s (%d app(s))", ", ".join(pools), len(apps))

    @stream.after_shutdown  # after the broker drained in-flight messages (graceful_timeout): they still need the database
    async def close() -> None:
        for resource in closing:
            await resource.aclose() if hasattr(resource, "aclose") else await resource.close()
        shutdown_tracing()

    for pool in pools:
        subscriber = broker.subscriber(dispatcher_queue(pool), ack_policy=AckPolicy.NACK_ON_ERROR)
        subscriber(_consumer(ports, Republisher(broker, dispatcher_queue(pool).name, cfg.max_attempts)))

    return stream


def _consumer(ports: list[DispatcherPorts], republisher: Republisher):
    async def dispatch(msg: RabbitMessage) -> None:
        attempt = int((msg.headers or {}).get(ATTEMPT_HEADER, 0)) + 1
        await handle_plan(ports[0], republisher, msg.body, attempt)
        await msg.ack()

    return dispatch


if __name__ == "__main__":
    asyncio.run(build().run())
