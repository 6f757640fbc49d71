"""scim-dispatcher composition root: per served pool, an engine over the partitions this replica owns; outcomes ->
links, audit, retry/hold/DLQ."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field

import httpx
from faststream import FastStream
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo import AsyncMongoClient

from okta_bridge.audit import AuditPublisher
from okta_bridge.bus import Consumer, Delivery, Publisher
from okta_bridge.connectors import load_connectors
from okta_bridge.contracts import MembershipPlanned, TargetValuesObserved
from okta_bridge.health import HealthServer, Readiness, broker_check, channels_check, mongo_check, serve_health
from okta_bridge.metrics import PARTITIONS_OWNED
from okta_bridge.observe import CircuitRecorder, source_name
from okta_bridge.stores.observed import MongoObserved
from okta_bridge.logs import register_secret, register_settings_secrets, setup_logging
from okta_bridge.mongo import connect
from okta_bridge.partitions import PartitionOwner
from okta_bridge.permits import PermitPool, Slots
from okta_bridge.runtime import PartitionRoutes, PlanPublisher, Republisher, make_broker, prepare_topology
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.stores.group_links import MongoGroupLinks
from okta_bridge.stores.groups import GroupState
from okta_bridge.stores.leases import Leases
from okta_bridge.stores.links import MongoLinks
from okta_bridge.stores.partitions import MongoPartitions
from okta_bridge.stores.permits import MongoPermits
from okta_bridge.telemetry import setup_tracing, shutdown_tracing
from okta_bridge.topology import EVENTS_EXCHANGE, WRITEBACK_ROUTING_KEY, partition_queue
from scim_dispatcher.adapters.scim_groups import ScimGroupClient
from scim_dispatcher.adapters.traced_http import app_clients
from scim_dispatcher.circuit import Circuits
from scim_dispatcher.consume import DispatcherPorts
from scim_dispatcher.engine import Engine, EngineConfig
from scim_dispatcher.groups import GroupDispatcher
from scim_dispatcher.handlers import Dispatcher
from scim_dispatcher.legacy import drain_legacy_queue

log = logging.getLogger("scim_dispatcher")


class DispatcherSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", extra="ignore")

    pools: str = Field(default="default", description="comma-separated pools this dispatcher serves")
    replica: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}",
                         description="this replica's name among the pool's members (each process start adds "
                                     "a random suffix: a restarted replica never inherits its leases)")
    max_attempts: int = Field(default=15, description="transient failures before a plan is dead-lettered")
    probe_interval_s: float = 10.0
    circuit_failures: int = Field(default=5, ge=1, description="transient failures in a row that open the circuit")
    metrics_port: int = Field(default=0, description="deprecated: METRICS_PORT (health and metrics); when set, "
                                                     "used instead of it")
    partition_ttl_s: float = Field(default=45.0, description="a dead owner's partitions free after this (raised to "
                                                             "the longest app timeout plus 8 s when shorter)")
    batch_size: int = Field(default=100, ge=1, le=1000, description="plans whose database work is done together")
    batch_wait_ms: float = Field(default=250, ge=0, description="how long a batch lingers at most while plans keep "
                                                                "coming (a busy dispatcher makes bigger batches)")
    batch_gap_ms: float = Field(default=25, ge=0, description="a batch goes once no plan came for this long (a quiet "
                                                             "dispatcher waits only this)")
    max_in_flight: int = Field(default=32, ge=1, description="SCIM requests of this replica at once")
    prefetch: int = Field(default=64, ge=1, description="unacknowledged plans per partition consumed")
    group_lease_ttl_s: float = Field(default=120.0, description="a target group name's claim frees after this")


@dataclass
class Running:
    """What start-up made, for shutdown and readiness."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)  # ends the owners' loops
    permits_stop: asyncio.Event = field(default_factory=asyncio.Event)  # ends the permit pools, after the owners
    engines: dict[str, Engine] = field(default_factory=dict)  # by pool
    owners: list[PartitionOwner] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)  # the owners' loops
    permit_tasks: list[asyncio.Task] = field(default_factory=list)
    health: HealthServer | None = None
    client: AsyncMongoClient | None = None
    http: dict[str, httpx.AsyncClient] | None = None  # by app id
    publisher: Publisher | None = None


class Outbox:
    def __init__(self, publisher: Publisher, plans: PlanPublisher) -> None:
        self._publisher, self._plans = publisher, plans

    async def plan(self, plan: MembershipPlanned, pool: str) -> None:
        await self._plans.publish(plan, pool)

    async def observed(self, values: TargetValuesObserved) -> None:
        await self._publisher.publish(values, exchange=EVENTS_EXCHANGE.name, routing_key=WRITEBACK_ROUTING_KEY)


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
    # on shutdown the partitions are drained and released first, the app permits given back after: a plan that
    # sent its first request still needs a permit for the next one while its partition drains
    running = Running()
    # a process that was paused, not dead, may still believe it holds its leases: a new process never shares its name
    me = f"{cfg.replica}~{secrets.token_hex(3)}"

    readiness = Readiness()

    @stream.on_startup
    async def start() -> None:
        running.health = await serve_health(cfg.metrics_port or base.metrics_port, readiness)
        client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
        circuits.on_change = CircuitRecorder(MongoObserved(db, okta.org_url), source_name(f"scim-dispatcher:{me}"))
        partitions = MongoPartitions(db, okta.org_url)
        for pool in pools:
            await partitions.claim_count(pool, connectors.partitions(pool))
        connection = await broker.connect()
        # write-backs go to the translator's queue
        await prepare_topology(broker, connection, translator=True,
                               pools={p: connectors.partitions(p) for p in pools})
        publisher = Publisher(connection)
        await publisher.start()
        audit = AuditPublisher(publisher, "scim-dispatcher", okta.org_url)
        http = app_clients(apps.values(), cfg.max_in_flight)  # per app: its TLS settings
        engines = running.engines
        clients = {a.okta_app_id: ScimGroupClient(http[a.okta_app_id], a.base_url, a.version, headers=a.auth_headers(),
                                                  timeout_s=a.timeout_s, unique_field=a.unique_user_field,
                                                  deactivate_with=a.deactivate_with, group_update=a.group_update,
                                                  content_type=a.content_type, send_if_match=a.send_if_match,
                                                  max_response_bytes=a.max_response_bytes,
                                                  gate=_gate(engines, a.pool, a.okta_app_id), metrics_app=a.name)
                   for a in apps.values()}
        links, group_links, group_state = MongoLinks(db, okta.org_url), MongoGroupLinks(db, okta.org_url), \
            GroupState(db, okta.org_url)
        await group_links.ensure_indexes()
        await links.ensure_indexes()
        await group_state.ensure_indexes()
        names = Leases.keyed(db, ttl_s=max(cfg.group_lease_ttl_s, *(4 * a.timeout_s for a in apps.values())))
        await names.ensure_indexes()
        outbox = Outbox(publisher, PlanPublisher(publisher, connectors))
        # no write starts later than this before a lease can lapse: longer than any request's timeout
        margin = max([5.0, *(a.timeout_s + 2 for a in apps.values())])
        ttl = max(cfg.partition_ttl_s, margin + 6)
        slots = Slots(cfg.max_in_flight)  # one in-flight limit for the replica, whatever its pools
        for pool in pools:
            pool_apps = {i: a for i, a in apps.items() if a.pool == pool}
            ports = DispatcherPorts(apps=pool_apps, users=Dispatcher(pool_apps, clients, links),
                                    groups=GroupDispatcher(pool_apps, clients, group_state, group_links, links, names),
                                    group_state=group_state, circuits=circuits, audit=audit, outbox=outbox)
            permits = PermitPool(MongoPermits(db, okta.org_url), f"apps|{pool}", me,
                                 {i: a.max_concurrency for i, a in pool_apps.items()}, ttl_s=ttl, margin_s=margin)
            running.permit_tasks.append(asyncio.get_running_loop().create_task(permits.run(running.permits_stop)))
            engine = Engine(ports, Republisher(publisher, PartitionRoutes(pool), cfg.max_attempts), audit, links,
                            EngineConfig(pool, batch_size=cfg.batch_size, batch_wait_s=cfg.batch_wait_ms / 1000,
                                         batch_gap_s=cfg.batch_gap_ms / 1000, max_in_flight=cfg.max_in_flight),
                            permits, slots=slots)
            engine.queue_of = lambda p, pool=pool: partition_queue(pool, p).name
            engine.consumer = Consumer(connection, cfg.prefetch, _intake(engine), f"dispatcher.{pool}")
            await engine.consumer.start()
            engines[pool] = engine
            owner = PartitionOwner(partitions, pool, me, engine, ttl, margin)
            running.owners.append(owner)
            running.tasks.append(asyncio.get_running_loop().create_task(owner.run(running.stop)))
        for pool in pools:
            await drain_legacy_queue(connection, PlanPublisher(publisher, connectors), pool)
        running.client, running.http, running.publisher = client, http, publisher
        readiness.add("rabbitmq", broker_check(connection))
        readiness.add("consumers", channels_check(lambda: [e.consumer.channel for e in engines.values()]))
        readiness.add("mongodb", mongo_check(client))
        readiness.add("partitions", _partitions_check(running.owners, running.tasks))
        for owner in running.owners:
            PARTITIONS_OWNED.labels(owner.pool).set_function(owner.owned)
        readiness.started = True
        log.info("serving pools %s (%d app(s)) as %s; partition leases of %.0f s", ", ".join(pools), len(apps),
                 me, ttl)

    @stream.on_shutdown  # SIGTERM: every partition is drained and released at once, not after its lease's TTL
    async def stop() -> None:
        readiness.started = False  # draining: no longer ready
        running.stop.set()
        if running.tasks:
            await asyncio.gather(*running.tasks, return_exceptions=True)
        running.permits_stop.set()
        if running.permit_tasks:
            await asyncio.gather(*running.permit_tasks, return_exceptions=True)
        for engine in running.engines.values():
            await engine.close()
            await engine.consumer.close()
        if running.publisher is not None:
            await running.publisher.close()

    @stream.after_shutdown
    async def close() -> None:
        if running.http is not None:
            for http in set(running.http.values()):
                await http.aclose()
            await running.client.close()
        if running.health is not None:
            await running.health.stop()
        shutdown_tracing()

    return stream


def _partitions_check(owners: list, tasks: list):
    """Ready while every pool's owner loop runs, owning partitions or waiting for them (a pool with more replicas
    than partitions leaves some waiting: they are standbys, still ready)."""
    def check() -> tuple[bool, str]:
        if any(t.done() for t in tasks):
            return False, "partition owner stopped"
        owned = sum(o.owned() for o in owners)
        return True, f"owning {owned} partition(s)" if owned else "waiting for partitions"
    return check


def _gate(engines: dict[str, Engine], pool: str, app_id: str):
    return lambda: engines[pool].gate(app_id)


def _intake(engine: Engine):
    def on_delivery(delivery: Delivery) -> None:
        engine.on_delivery(delivery, int(delivery.queue.rsplit(".p", 1)[1]))
    return on_delivery


if __name__ == "__main__":
    asyncio.run(build().run())
