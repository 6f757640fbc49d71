"""audit-recorder composition root: consumes ``audit.records`` in batches and serves the trail over uvicorn."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import uvicorn
from faststream import AckPolicy
from faststream.rabbit.annotations import RabbitMessage
from fastapi import FastAPI
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from audit_recorder.api import add_routes
from audit_recorder.batcher import Batcher
from okta_bridge.contracts import AuditRecorded
from okta_bridge.logs import setup_logging, register_settings_secrets
from okta_bridge.mongo import connect
from okta_bridge.stores.audit import AuditStore
from okta_bridge.runtime import ATTEMPT_HEADER, Republisher, make_broker
from okta_bridge.settings import BridgeSettings
from okta_bridge.telemetry import setup_tracing, shutdown_tracing
from okta_bridge.topology import AUDIT_QUEUE, declare_audit

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
    broker = make_broker(base.rabbitmq_url.get_secret_value(), max(base.prefetch, cfg.batch_size * 2))
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    store = AuditStore(db)
    batcher = Batcher(store.insert, cfg.batch_size, cfg.batch_delay_s)

    republisher = Republisher(broker, AUDIT_QUEUE.name, max_attempts=cfg.max_attempts)

    @broker.subscriber(AUDIT_QUEUE, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def record_step(msg: RabbitMessage) -> None:
        """Acked once its batch is written; a failed write goes through the retry tiers (database down)."""
        attempt = int((msg.headers or {}).get(ATTEMPT_HEADER, 0)) + 1
        try:
            record = AuditRecorded.model_validate_json(msg.body)
        except ValidationError as exc:
            await republisher.dead_letter(msg.body, f"invalid audit record: {exc.error_count()} error(s)", attempt,
                                          "audit-recorder")
            await msg.ack()
            return
        try:
            await batcher.add(record.model_dump(mode="python"))
        except Exception as exc:  # noqa: BLE001 - the database refused the batch: retried later, never dropped
            if attempt >= republisher.max_attempts:
                await republisher.dead_letter(record, f"audit write failed {attempt} times: {exc}", attempt,
                                              "audit-recorder")
            else:
                await republisher.retry(record, attempt)
        await msg.ack()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await store.ensure_indexes(cfg.retention_days)
        await broker.start()
        await declare_audit(broker)
        log.info("recording audit; retention %d days", cfg.retention_days)
        yield
        await broker.stop()
        await batcher.flush()
        await client.close()
        shutdown_tracing()

    async def health() -> tuple[bool, dict]:
        try:
            await store.ping()
        except Exception as exc:  # noqa: BLE001
            return False, {"mongodb": type(exc).__name__}
        return True, {"batches_written": batcher.batches}

    app = FastAPI(title="okta-onprem-bridge audit", lifespan=lifespan)
    add_routes(app, store, health)
    return app, cfg


def main() -> None:
    app, cfg = build()
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")


if __name__ == "__main__":
    main()
