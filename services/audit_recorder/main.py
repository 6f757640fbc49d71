"""audit-recorder composition root: consumes ``audit.records`` in batches and serves the trail over uvicorn (the API
on ``AUDIT_PORT`` with a token, ``/healthz`` on ``AUDIT_HEALTH_PORT`` without)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import NamedTuple

import uvicorn
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from audit_recorder.api import create_api, create_health
from okta_bridge.apiauth import ApiAuthSettings
from audit_recorder.batcher import MESSAGES_IN_HAND, Recorder
from okta_bridge.bus import Consumer, Publisher
from okta_bridge.deadletters import compact
from okta_bridge.health import Readiness, broker_check, channels_check, mongo_check, serve_health
from okta_bridge.logs import mask_handlers, setup_logging, register_settings_secrets
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
    health_port: int = Field(default=8071, description="GET /healthz, unauthenticated (probes); 0: off")
    openapi: bool = Field(default=False, description="serve /openapi.json (docs/audit-api.openapi.json has it)")
    retention_days: int = Field(default=90, ge=1)
    batch_size: int = 500
    batch_delay_s: float = 0.2
    max_attempts: int = Field(default=30, description="failed writes before a record is dead-lettered")
    dead_letters_compact_s: float = Field(default=60, ge=0, description="how often the dead letters RabbitMQ made "
                                                                         "whole are rewritten as records (0: off)")


class Built(NamedTuple):
    """What :func:`build` makes, for :func:`serve`."""

    app: FastAPI  # the API; its lifespan runs the recorder
    health: FastAPI  # /healthz
    cfg: AuditSettings


@dataclass
class Running:
    """What the lifespan started, for health."""

    recorder: Recorder | None = None


def build() -> Built:
    setup_logging("audit-recorder")
    setup_tracing("audit-recorder")
    base, cfg, auth = BridgeSettings(), AuditSettings(), ApiAuthSettings()
    tokens = auth.parsed_tokens()  # a malformed entry stops the start, naming the entry (never its token)
    if not len(tokens):
        log.warning("no API_TOKENS: GET /audit refuses every request")
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())
    broker = make_broker(base.rabbitmq_url.get_secret_value(), base.prefetch)
    client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
    store = AuditStore(db)
    running = Running()
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        mask_handlers()  # uvicorn's own handlers, made when uvicorn.run configured its loggers
        observability = await serve_health(base.metrics_port, readiness)
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
        running.recorder = recorder
        compacting = asyncio.get_running_loop().create_task(_compact_dead_letters(connection,
                                                                                cfg.dead_letters_compact_s))
        readiness.add("rabbitmq", broker_check(connection))
        readiness.add("consumers", channels_check(lambda: [consumer.channel]))
        readiness.add("mongodb", mongo_check(client))
        readiness.started = True
        log.info("recording audit; retention %d days", cfg.retention_days)
        yield
        readiness.started = False
        compacting.cancel()
        await consumer.cancel(AUDIT_QUEUE.name)
        await recorder.close()
        await consumer.close()
        await publisher.close()
        await broker.stop()
        await client.close()
        if observability is not None:
            await observability.stop()
        shutdown_tracing()

    async def health() -> tuple[bool, dict]:
        try:
            await store.ping()
        except Exception as exc:  # noqa: BLE001
            return False, {"mongodb": type(exc).__name__}
        return True, {"batches_written": running.recorder.batches if running.recorder is not None else 0}

    app = create_api(store, tokens, auth.hosts(), lifespan=lifespan, serve_openapi=cfg.openapi)
    return Built(app, create_health(health), cfg)


async def _compact_dead_letters(connection, interval_s: float) -> None:
    """Dead letters keep only what a replay needs: those RabbitMQ dead-lettered whole (a work queue's delivery limit)
    are rewritten as their records (:func:`okta_bridge.deadletters.compact`)."""
    while interval_s:
        try:
            rewritten = await compact(connection)
            if rewritten:
                log.info("%d dead letter(s) rewritten as their records", rewritten)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the broker is away, or no read right: try again later
            log.warning("dead letters not compacted: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)


async def serve(app: FastAPI, health: FastAPI, cfg: AuditSettings) -> None:
    """The API (its lifespan runs the recorder) and, once it is up, the health app; a signal stops both."""
    api = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning"))
    probe = uvicorn.Server(uvicorn.Config(health, host=cfg.host, port=cfg.health_port, log_level="warning",
                                          lifespan="off"))
    probe.capture_signals = contextlib.nullcontext  # type: ignore[method-assign] # the API server's handlers stop both
    api_task = asyncio.create_task(api.serve())
    while not api.started and not api_task.done():
        await asyncio.sleep(0.05)
    if api_task.done() or not cfg.health_port:
        await api_task
        return
    probe_task = asyncio.create_task(probe.serve())
    await api_task
    probe.should_exit = True
    await probe_task


def main() -> None:
    built = build()
    asyncio.run(serve(built.app, built.health, built.cfg))


if __name__ == "__main__":
    main()
