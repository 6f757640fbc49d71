"""translator composition root: consumes ``translator.work`` (events and sync requests), publishes plans."""

from __future__ import annotations

import asyncio
import logging

from faststream import AckPolicy, FastStream
from faststream.rabbit.annotations import RabbitMessage
from pydantic import TypeAdapter, ValidationError

from okta_bridge.audit import BrokerAudit
from okta_bridge.connectors import load_connectors
from okta_bridge.contracts import (AppSyncRequested, AuditStep, GroupPlanned, MembershipPlanned, OktaEventReceived,
                                   ScimOperationPlanned, TargetValuesObserved)
from okta_bridge.logs import register_secret, setup_logging, register_settings_secrets
from okta_bridge.mongo import claim_org, connect, ensure_indexes
from okta_bridge.okta_client import OktaClient, OktaError, OktaTransientError
from okta_bridge.runtime import ATTEMPT_HEADER, Republisher, make_broker
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.telemetry import setup_tracing, shutdown_tracing
from okta_bridge.topology import PLANS_EXCHANGE, TRANSLATOR_QUEUE, declare_dispatcher_pool, declare_translator
from translator.adapters.mongo_assignments import MongoAssignments, MongoWritebacks
from okta_bridge.group_state import GroupState
from translator.groups import GroupPlanner
from translator.handlers import Translator

log = logging.getLogger("translator")
# By shape, not routing key (a message back from a retry tier carries the work queue's name as its key); the
# contracts forbid extra fields, so exactly one of them accepts a given message.
TRANSLATOR_MESSAGES = TypeAdapter(AppSyncRequested | TargetValuesObserved | OktaEventReceived)
MAX_ATTEMPTS = 10


class BrokerPlanOutbox:
    def __init__(self, broker) -> None:
        self._broker = broker

    async def publish(self, plan: ScimOperationPlanned | GroupPlanned | MembershipPlanned, pool: str) -> None:
        await self._broker.publish(plan, exchange=PLANS_EXCHANGE, routing_key=pool, persist=True)


def build() -> FastStream:
    setup_logging("translator")
    setup_tracing("translator")
    base, okta = BridgeSettings(), OktaSettings()
    register_secret(okta.api_token.get_secret_value())
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())
    connectors = load_connectors(base.connectors_file)
    broker = make_broker(base.rabbitmq_url.get_secret_value(), base.prefetch)
    app = FastStream(broker)
    state: dict = {}

    @app.on_startup
    async def connect_stores() -> None:
        client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
        await claim_org(db, okta.org_url)
        await ensure_indexes(db)
        audit = BrokerAudit(broker, "translator", okta.org_url)
        okta_client = OktaClient(okta.org_url, okta.api_token.get_secret_value(), timeout_s=okta.request_timeout_s)
        group_state = GroupState(db, okta.org_url)
        await group_state.ensure_indexes()
        outbox = BrokerPlanOutbox(broker)
        groups = GroupPlanner(okta.org_url, connectors.by_app_id(), group_state, okta_client, outbox, audit)
        state.update(client=client, okta=okta_client, audit=audit, translator=Translator(
            okta.org_url, connectors.by_app_id(), MongoAssignments(db, okta.org_url), okta_client,
            outbox, audit, MongoWritebacks(db, okta.org_url), groups),
            republisher=Republisher(broker, TRANSLATOR_QUEUE.name, MAX_ATTEMPTS))

    @app.on_startup
    async def declare() -> None:  # before any consumer starts: nothing is ever published to an undeclared exchange
        await broker.connect()
        await declare_translator(broker)
        for pool in connectors.pools():  # plans are never unroutable, even before any dispatcher started
            await declare_dispatcher_pool(broker, pool)

    @app.after_shutdown  # after the broker drained in-flight messages (graceful_timeout): they still need the database
    async def close() -> None:
        if state:
            await state["okta"].aclose()
            await state["client"].close()
        shutdown_tracing()

    @broker.subscriber(TRANSLATOR_QUEUE, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def translate(msg: RabbitMessage) -> None:
        await handle_message(state, msg)

    return app


async def handle_message(state: dict, msg: RabbitMessage) -> None:
    """Ack only after the plan (or the retry / dead letter) is confirmed by the broker."""
    translator: Translator = state["translator"]
    republisher: Republisher = state["republisher"]
    attempt = int((msg.headers or {}).get(ATTEMPT_HEADER, 0)) + 1
    try:
        message = TRANSLATOR_MESSAGES.validate_json(msg.body)
    except ValidationError as exc:
        await republisher.dead_letter(msg.body, f"invalid message: {exc.error_count()} error(s)", attempt, "translator")
        await state["audit"].record(AuditStep.DEAD_LETTERED, detail="translator: invalid message")
        await msg.ack()
        return
    try:
        if isinstance(message, TargetValuesObserved):
            await translator.handle_writeback(message)
        elif isinstance(message, AppSyncRequested) and message.scope == "groups":
            count = await translator.groups.handle_sync(message)
            log.info("group sync of %s (%s): %d group(s) pushed", message.app_id, message.reason, count)
        elif isinstance(message, AppSyncRequested):
            count = await translator.handle_sync(message)
            log.info("full sync of %s (%s): %d user(s) planned", message.app_id, message.reason, count)
        else:
            await translator.handle_event(message)
    except OktaError as exc:
        await _retry_or_dead_letter(state, message, exc, attempt)
    except Exception as exc:  # noqa: BLE001 - database or broker trouble: transient, retried through the tiers
        log.exception("translation failed; retry %d", attempt)
        await _retry_or_dead_letter(state, message, OktaTransientError(f"{type(exc).__name__}: {exc}"), attempt)
    await msg.ack()


async def _retry_or_dead_letter(state: dict, message, exc: OktaError, attempt: int) -> None:
    republisher: Republisher = state["republisher"]
    fields = dict(event_uuid=getattr(message, "event_uuid", None), app_id=getattr(message, "app_id", None),
                  detail=str(exc))
    if attempt >= republisher.max_attempts:
        await republisher.dead_letter(message, f"translator gave up after {attempt} attempts: {exc}", attempt,
                                      "translator")
        await state["audit"].record(AuditStep.DEAD_LETTERED, **fields)
        return
    retry_after = exc.retry_after_s if isinstance(exc, OktaTransientError) else None
    log.warning("Okta read failed (%s); retry %d", exc, attempt)
    await republisher.retry(message, attempt, retry_after)
    await state["audit"].record(AuditStep.RETRIED, **fields)


if __name__ == "__main__":
    asyncio.run(build().run())
