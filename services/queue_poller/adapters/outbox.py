"""Publishes to RabbitMQ: one trace per event (a new root, linked to the poll that found it)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from faststream.rabbit import RabbitBroker
from opentelemetry import context, trace

from okta_bridge.audit import Audit
from okta_bridge.contracts import AppSyncRequested, AuditStep, OktaEventReceived, SyncReason
from okta_bridge.runtime import REASON_HEADER
from okta_bridge.telemetry import ATTR
from okta_bridge.topology import DLX, EVENT_ROUTING_PREFIX, EVENTS_EXCHANGE, SYNC_ROUTING_KEY

tracer = trace.get_tracer("queue_poller")


class BrokerOutbox:
    def __init__(self, broker: RabbitBroker, audit: Audit, org: str) -> None:
        self._broker, self._audit, self._org = broker, audit, org

    async def publish_event(self, event: OktaEventReceived, poll_span_context: Any) -> None:
        links = [trace.Link(poll_span_context)] if poll_span_context else []
        with tracer.start_as_current_span(f"okta event {event.event_type}", context=context.Context(),
                                          links=links, kind=trace.SpanKind.PRODUCER) as span:
            span.set_attribute(ATTR.EVENT_UUID, event.event_uuid)
            span.set_attribute(ATTR.EVENT_TYPE, event.event_type)
            await asyncio.gather(
                self._broker.publish(event, exchange=EVENTS_EXCHANGE,
                                     routing_key=EVENT_ROUTING_PREFIX + event.event_type,
                                     persist=True, message_id=event.event_uuid),
                self._audit.record(AuditStep.RECEIVED, event_uuid=event.event_uuid, event_type=event.event_type,
                                   okta_user_id=_user(event), app_id=_app(event)))

    async def request_sync(self, app_id: str, reason: SyncReason) -> None:
        with tracer.start_as_current_span(f"full sync requested ({reason})", context=context.Context()) as span:
            span.set_attribute(ATTR.APP_ID, app_id)
            msg = AppSyncRequested(org=self._org, app_id=app_id, reason=reason, sync_id=uuid.uuid4().hex)
            await self._broker.publish(msg, exchange=EVENTS_EXCHANGE, routing_key=SYNC_ROUTING_KEY, persist=True)
            await self._audit.record(AuditStep.RECEIVED, app_id=app_id, event_type=f"sync:{reason}",
                                     detail=f"full sync requested: {reason}")

    async def request_group_sync(self, app_id: str, reason: SyncReason) -> None:
        with tracer.start_as_current_span(f"group sync requested ({reason})", context=context.Context()) as span:
            span.set_attribute(ATTR.APP_ID, app_id)
            msg = AppSyncRequested(org=self._org, app_id=app_id, reason=reason, sync_id=uuid.uuid4().hex,
                                   scope="groups")
            await self._broker.publish(msg, exchange=EVENTS_EXCHANGE, routing_key=SYNC_ROUTING_KEY, persist=True)
            await self._audit.record(AuditStep.RECEIVED, app_id=app_id, event_type=f"sync:{reason}",
                                     detail=f"group sync requested: {reason}")

    async def dead_letter(self, raw: Any, reason: str) -> None:
        body = json.dumps(raw, default=str).encode()
        await self._broker.publish(body, exchange=DLX, routing_key="queue-poller.malformed", persist=True,
                                   headers={REASON_HEADER: reason})
        uuid_ = raw.get("uuid") if isinstance(raw, dict) else None
        await self._audit.record(AuditStep.DEAD_LETTERED, event_uuid=uuid_, detail=f"malformed event: {reason}")


def _user(e: OktaEventReceived) -> str | None:
    return next((t.id for t in e.targets if t.type == "User"), None)


def _app(e: OktaEventReceived) -> str | None:
    return next((t.id for t in e.targets if t.type == "AppInstance"), None)
