"""Publishes to RabbitMQ: one trace per event (a new root, linked to the poll that found it); the audit records of a
page go out as one message."""

from __future__ import annotations

import json
import uuid
from contextlib import AbstractAsyncContextManager
from typing import Any

from opentelemetry import context, trace

from okta_bridge.audit import AuditPublisher
from okta_bridge.bus import REASON_HEADER, Publisher
from okta_bridge.deadletters import redact_event
from okta_bridge.events import group_id_of
from okta_bridge.contracts import AppSyncRequested, AuditStep, OktaEventReceived, Reason, SyncReason
from okta_bridge.telemetry import ATTR
from okta_bridge.topology import DLX, EVENT_ROUTING_PREFIX, EVENTS_EXCHANGE, SYNC_ROUTING_KEY

tracer = trace.get_tracer("queue_poller")


class BrokerOutbox:
    def __init__(self, publisher: Publisher, audit: AuditPublisher, org: str) -> None:
        self._publisher, self._audit, self._org = publisher, audit, org

    def batch(self) -> AbstractAsyncContextManager[None]:
        return self._audit.batch()

    async def publish_event(self, event: OktaEventReceived, poll_span_context: Any) -> None:
        links = [trace.Link(poll_span_context)] if poll_span_context else []
        with tracer.start_as_current_span(f"okta event {event.event_type}", context=context.Context(),
                                          links=links, kind=trace.SpanKind.PRODUCER) as span:
            span.set_attribute(ATTR.EVENT_UUID, event.event_uuid)
            span.set_attribute(ATTR.EVENT_TYPE, event.event_type)
            await self._publisher.publish(event, exchange=EVENTS_EXCHANGE.name,
                                          routing_key=EVENT_ROUTING_PREFIX + event.event_type,
                                          message_id=event.event_uuid)
            await self._audit.record(AuditStep.RECEIVED, reason=Reason.RECEIVED, event_uuid=event.event_uuid,
                                     event_type=event.event_type, okta_user_id=_user(event), app_id=_app(event),
                                     okta_group_id=group_id_of(event))

    async def request_sync(self, app_id: str, reason: SyncReason) -> None:
        await self._sync(app_id, reason, "users")

    async def request_group_sync(self, app_id: str, reason: SyncReason) -> None:
        await self._sync(app_id, reason, "groups")

    async def _sync(self, app_id: str, reason: SyncReason, scope: str) -> None:
        name = "full sync" if scope == "users" else "group sync"
        with tracer.start_as_current_span(f"{name} requested ({reason})", context=context.Context()) as span:
            span.set_attribute(ATTR.APP_ID, app_id)
            msg = AppSyncRequested(org=self._org, app_id=app_id, reason=reason, sync_id=uuid.uuid4().hex,
                                   scope=scope)
            await self._publisher.publish(msg, exchange=EVENTS_EXCHANGE.name, routing_key=SYNC_ROUTING_KEY)
            await self._audit.record(AuditStep.RECEIVED, reason=Reason.RECEIVED, app_id=app_id,
                                     event_type=f"sync:{reason}", detail=f"{name} requested: {reason}")

    async def dead_letter(self, raw: Any, reason: str) -> None:
        """Kept without the event's actor, client (IP, geographical context), request or names: ids and type."""
        body = json.dumps(redact_event(raw), default=str).encode()
        await self._publisher.publish(body, exchange=DLX.name, routing_key="queue-poller.malformed",
                                      headers={REASON_HEADER: reason})
        uuid_ = raw.get("uuid") if isinstance(raw, dict) and isinstance(raw.get("uuid"), str) else None
        await self._audit.record(AuditStep.DEAD_LETTERED, reason=Reason.INVALID_MESSAGE, event_uuid=uuid_,
                                 detail=f"malformed event: {reason}")


def _user(e: OktaEventReceived) -> str | None:
    return next((t.id for t in e.targets if t.type == "User"), None)


def _app(e: OktaEventReceived) -> str | None:
    return next((t.id for t in e.targets if t.type == "AppInstance"), None)
