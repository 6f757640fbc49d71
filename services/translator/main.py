"""translator composition root: consumes ``translator.work`` (events and sync requests), publishes plans."""

from __future__ import annotations

import asyncio
import logging

from dataclasses import dataclass

from faststream import AckPolicy, FastStream
from faststream.rabbit.annotations import RabbitMessage
from pydantic import TypeAdapter, ValidationError

from okta_bridge.audit import Audit, BrokerAudit
from okta_bridge.connectors import load_connectors
from okta_bridge.contracts import (AppSyncRequested, GroupPlanned, MembershipPlanned, OktaEventReceived, Reason,
                                   ScimOperationPlanned, TargetValuesObserved)
from okta_bridge.logs import register_secret, setup_logging, register_settings_secrets
from okta_bridge.mongo import connect
from okta_bridge.stores.meta import claim_org
from okta_bridge.okta_client import OktaClient
from okta_bridge.outcomes import Disposition, Failure, failure_of, settle
from okta_bridge.runtime import ATTEMPT_HEADER, Republisher, make_broker
from okta_bridge.settle import carry_out
from okta_bridge.settings import BridgeSettings, OktaSettings
from okta_bridge.telemetry import setup_tracing, shutdown_tracing
from okta_bridge.topology import PLANS_EXCHANGE, TRANSLATOR_QUEUE, declare_dispatcher_pool, declare_translator
from okta_bridge.stores.assignments import MongoAssignments, MongoWritebacks
from okta_bridge.stores.groups import GroupState
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


@dataclass
class TranslatorPorts:
    translator: Translator
    republisher: Republisher
    audit: Audit


def build() -> FastStream:
    setup_logging("translator")
    setup_tracing("translator")
    base, okta = BridgeSettings(), OktaSettings()
    register_secret(okta.api_token.get_secret_value())
    register_settings_secrets(base.rabbitmq_url.get_secret_value(), base.mongodb_url.get_secret_value())
    connectors = load_connectors(base.connectors_file)
    broker = make_broker(base.rabbitmq_url.get_secret_value(), base.prefetch)
    app = FastStream(broker)
    ports: list[TranslatorPorts] = []  # filled on start-up: nothing connects at import or build time
    closing: list = []

    @app.on_startup
    async def connect_stores() -> None:
        client, db = connect(base.mongodb_url.get_secret_value(), base.mongodb_db)
        await claim_org(db, okta.org_url)
        assignments = MongoAssignments(db, okta.org_url)
        await assignments.ensure_indexes()
        audit = BrokerAudit(broker, "translator", okta.org_url)
        okta_client = OktaClient(okta.org_url, okta.api_token.get_secret_value(), timeout_s=okta.request_timeout_s)
        group_state = GroupState(db, okta.org_url)
        await group_state.ensure_indexes()
        outbox = BrokerPlanOutbox(broker)
        groups = GroupPlanner(okta.org_url, connectors.by_app_id(), group_state, okta_client, outbox, audit)
        translator = Translator(okta.org_url, connectors.by_app_id(), assignments, okta_client,
                                outbox, audit, MongoWritebacks(db, okta.org_url), groups)
        ports.append(TranslatorPorts(translator, Republisher(broker, TRANSLATOR_QUEUE.name, MAX_ATTEMPTS), audit))
        closing.extend([okta_client, client])

    @app.on_startup
    async def declare() -> None:  # before any consumer starts: nothing is ever published to an undeclared exchange
        await broker.connect()
        await declare_translator(broker)
        for pool in connectors.pools():  # plans are never unroutable, even before any dispatcher started
            await declare_dispatcher_pool(broker, pool)

    @app.after_shutdown  # after the broker drained in-flight messages (graceful_timeout): they still need the database
    async def close() -> None:
        for resource in closing:
            await resource.aclose() if hasattr(resource, "aclose") else await resource.close()
        shutdown_tracing()

    @broker.subscriber(TRANSLATOR_QUEUE, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def translate(msg: RabbitMessage) -> None:
        attempt = int((msg.headers or {}).get(ATTEMPT_HEADER, 0)) + 1
        await handle_message(ports[0], msg.body, attempt)
        await msg.ack()

    return app


async def handle_message(ports: TranslatorPorts, body: bytes, attempt: int) -> None:
    """Returns once the plan (or the retry / dead letter) is confirmed by the broker: then the message is acked."""
    republisher = ports.republisher
    try:
        message = TRANSLATOR_MESSAGES.validate_json(body)
    except ValidationError as exc:
        failure = Failure(Reason.INVALID_MESSAGE, f"translator: invalid message: {exc.error_count()} error(s)")
        await carry_out(settle(failure, attempt=attempt, max_attempts=republisher.max_attempts), body, attempt,
                        republisher=republisher, audit=ports.audit, source="translator", fields={})
        return
    try:
        await _translate(ports.translator, message)
        return
    except Exception as exc:  # noqa: BLE001 - Okta, database or broker trouble: settled by the policy
        failure = failure_of(exc)
        if failure.reason is Reason.INTERNAL:
            log.exception("translation failed; retry %d", attempt)
    verdict = settle(failure, attempt=attempt, max_attempts=republisher.max_attempts)
    if verdict.disposition is Disposition.RETRY:
        log.warning("translation failed (%s); retry %d", failure.message, attempt)
    fields = dict(event_uuid=getattr(message, "event_uuid", None), app_id=getattr(message, "app_id", None))
    await carry_out(verdict, message, attempt, republisher=republisher, audit=ports.audit, source="translator",
                    fields=fields)


async def _translate(translator: Translator, message) -> None:
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


if __name__ == "__main__":
    asyncio.run(build().run())
