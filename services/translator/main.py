"""translator composition root: consumes ``translator.work`` (events, sync requests, write-backs) in batches and
publishes plans to their key's partition."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field

from faststream import FastStream
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from pymongo import AsyncMongoClient

from okta_bridge.audit import AuditPublisher
from okta_bridge.bus import Consumer, Publisher
from okta_bridge.connectors import load_connectors
from okta_bridge.health import HealthServer, Readiness, broker_check, channels_check, mongo_check, serve_health
from okta_bridge.observe import record_budget, source_name
from okta_bridge.stores.observed import MongoObserved
from okta_bridge.logs import register_secret, register_settings_secrets, setup_logging
from okta_bridge.mongo import connect
from okta_bridge.okta_auth import okta_client_from_settings, scopes_for
from okta_bridge.okta_client import OktaClient
from okta_bridge.permits import okta_budget
from okta_bridge.runtime import PlanPublisher, QueueRoutes, Republisher, make_broker, prepare_topology
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.stores.assignments import MongoAssignments, MongoWritebacks
from okta_bridge.stores.groups import GroupState
from okta_bridge.stores.guards import MongoGuards
from okta_bridge.stores.meta import claim_org
from okta_bridge.stores.partitions import MongoPartitions
from okta_bridge.stores.permits import MongoPermits
from okta_bridge.telemetry import setup_tracing, shutdown_tracing
from okta_bridge.topology import TRANSLATOR_QUEUE
from translator.consume import TranslatorIntake
from translator.groups import GroupPlanner
from translator.guard import DeactivationGuard, refresh_paused
from translator.handlers import Translator
from translator.planning import Planner

log = logging.getLogger("translator")
MAX_ATTEMPTS = 10


class TranslatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRANSLATOR_", extra="ignore")

    batch_size: int = Field(default=200, ge=1, le=1000, description="events planned together at most")
    batch_wait_ms: float = Field(default=20, ge=0, description="how long a batch waits for more after its first")
    batch_concurrency: int = Field(default=2, ge=1, le=16, description="batches planned at once")
    filter_ids: int = Field(default=100, ge=1, le=200, description="users per filtered Okta listing")


@dataclass
class Running:
    """What start-up made, for shutdown: nothing connects at import or build time."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    health: HealthServer | None = None
    client: AsyncMongoClient | None = None
    okta: OktaClient | None = None
    publisher: Publisher | None = None
    consumer: Consumer | None = None
    intake: TranslatorIntake | None = None
    budget: asyncio.Task | None = None
    gauge: asyncio.Task | None = None
    observe: asyncio.Task | None = None


def build() -> FastStream:
    setup_logging("translator")
    setup_tracing("translator")
    base, okta, cfg = BridgeSettings(), OktaSettings(), TranslatorSettings()
    register_secret(okta.api_token.get_secret_value())
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())
    connectors = load_connectors(base.connectors_file, secrets=False)  # never writes to a target
    broker = make_broker(base.rabbitmq_url.get_secret_value(), base.prefetch)
    app = FastStream(broker)
    running = Running()
    readiness = Readiness()

    @app.on_startup
    async def start() -> None:
        running.health = await serve_health(base.metrics_port, readiness)
        client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
        await claim_org(db, okta.org_url)
        partitions = MongoPartitions(db, okta.org_url)
        for pool in sorted(connectors.pool_names()):
            await partitions.claim_count(pool, connectors.partitions(pool))
        assignments = MongoAssignments(db, okta.org_url)
        await assignments.ensure_indexes()
        group_state = GroupState(db, okta.org_url)
        await group_state.ensure_indexes()
        guards = MongoGuards(db, okta.org_url, assignments.count_assigned)
        await guards.ensure_indexes()
        connection = await broker.connect()
        # before consuming: nothing is ever published to an undeclared exchange, and plans are never unroutable, even
        # before any dispatcher started
        await prepare_topology(broker, connection, translator=True,
                               pools={p: connectors.partitions(p) for p in connectors.pool_names()})
        publisher = Publisher(connection)
        await publisher.start()
        audit = AuditPublisher(publisher, "translator", okta.org_url)
        budget = okta_budget(MongoPermits(db, okta.org_url), f"translator@{socket.gethostname()}:{os.getpid()}",
                             okta.max_concurrent_requests, okta.request_timeout_s)
        running.budget = asyncio.get_running_loop().create_task(budget.run(running.stop))
        writes = any(a.accept_user_updates for a in connectors.apps)  # okta.apps.manage only then
        okta_client = okta_client_from_settings(okta, scopes_for("translator", writes), filter_ids=cfg.filter_ids,
                                                gate=lambda: budget.slot("requests"))
        outbox = PlanPublisher(publisher, connectors)
        apps = connectors.by_app_id()
        translator = Translator(okta.org_url, apps, Planner(okta.org_url, apps, assignments, okta_client), outbox,
                                audit, MongoWritebacks(db, okta.org_url),
                                GroupPlanner(okta.org_url, apps, group_state, okta_client, outbox, audit),
                                guard=DeactivationGuard(apps, guards))
        running.gauge = asyncio.get_running_loop().create_task(refresh_paused(guards, apps, running.stop))
        running.observe = asyncio.get_running_loop().create_task(record_budget(
            MongoObserved(db, okta.org_url), source_name("translator"), okta_client.budget, running.stop))
        intake = TranslatorIntake(translator, Republisher(publisher, QueueRoutes(TRANSLATOR_QUEUE.name), MAX_ATTEMPTS),
                                  audit, cfg.batch_size, cfg.batch_wait_ms / 1000, cfg.batch_concurrency)
        consumer = Consumer(connection, max(base.prefetch, 2 * cfg.batch_size), intake.on_delivery,
                            TRANSLATOR_QUEUE.name)
        await consumer.start()
        await consumer.consume(TRANSLATOR_QUEUE.name)
        running.client, running.okta, running.publisher = client, okta_client, publisher
        running.consumer, running.intake = consumer, intake
        readiness.add("rabbitmq", broker_check(connection))
        readiness.add("consumers", channels_check(lambda: [consumer.channel]))
        readiness.add("mongodb", mongo_check(client))
        readiness.started = True
        log.info("translating for %d app(s); batches of %d", len(apps), cfg.batch_size)

    @app.on_shutdown  # before the broker closes: what is in hand is finished, the rest goes back to the queue
    async def stop() -> None:
        readiness.started = False
        if running.consumer is not None:
            for queue in running.consumer.queues:
                await running.consumer.cancel(queue)
            await running.intake.close()
            await running.consumer.close()
            await running.publisher.close()
            running.stop.set()
            await running.budget
            await running.gauge
            await running.observe

    @app.after_shutdown
    async def close() -> None:
        if running.okta is not None:
            await running.okta.aclose()
            await running.client.close()
        if running.health is not None:
            await running.health.stop()
        shutdown_tracing()

    return app


if __name__ == "__main__":
    asyncio.run(build().run())
