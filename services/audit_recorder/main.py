"""audit-recorder composition root: consumes ``audit.records`` in batches and serves the trail over uvicorn."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from audit_recorder.api import add_routes
from audit_recorder.batcher import MESSAGES_IN_HAND, Recorder
from okta_bridge.bus import Consumer, Publisher
from okta_bridge.metrics import serve_metrics
from okta_bridge.logs import setup_logging, register_settings_secrets
from okta_bridge.mongo import connect
from okta_bridge.stores.audit import AuditStore
from okta_bridge.runtime import QueueRoutes, Republisher, make_broker, prepare_topology
from okta_bridge.settings import BridgeSettings
from okta_bridge.telemetry import setup_tracing, shutdown_tracing
from okta_bridge.topology import AUDIT_QUEUE

log = logging.getLogger("audit_recorder")


class AuditSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8070
    retention_days: int = Field(default=90, ge=1)
    batch_size: int = 500
    batch_delay_s: float = 0.2
    max_attempts: int = Field(default=30, description="failed writes before a record is dead-lettered")


def build() -> tuple[FastAPI, AuditSettings]:
    setup_logging("audit-recorder")
    setup_tracing("audit-recorder")
    base, cfg = BridgeSettings(), AuditSettings()
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())
    broker = make_broker(base.rabbitmq_url.get_secret_value(), base.prefetch)
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    store = AuditStore(db)
    running: dict = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        serve_metrics(base.metrics_port)
        await store.ensure_indexes(cfg.retention_days)
        connection = await broker.connect()
        await prepare_topology(broker, connection, audit=True)
        publisher = Publisher(connection)
        await publisher.start()
        recorder = Recorder(store, Republisher(publisher, QueueRoutes(AUDIT_QUEUE.name), cfg.max_attempts),
                            cfg.batch_size, cfg.batch_delay_s)
        consumer = Consumer(connection, MESSAGES_IN_HAND, recorder.on_delivery, AUDIT_QUEUE.name)
        await consumer.start()
        await consumer.consume(AUDIT_QUEUE.name)
        running.update(recorder=recorder)
        log.info("recording audit; retention %d days", cfg.retention_days)
        yield
        await consumer.cancel(AUDIT_QUEUE.name)
        await recorder.close()
        await consumer.close()
        await publisher.close()
        await broker.stop()
        await client.close()
        shutdown_tracing()

    async def health() -> tuple[bool, dict]:
        try:
            await store.ping()
        except Exception as exc:  # noqa: BLE001
            return False, {"mongodb": type(exc).__name__}
        return True, {"batches_written": running["recorder"].batches if running else 0}

    app = FastAPI(title="okta-onprem-bridge audit", lifespan=lifespan)
    add_routes(app, store, health)
    return app, cfg


def main() -> None:
    app, cfg = build()
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")


if __name__ == "__main__":
    main()
