"""The translator's messages, from delivery to acknowledgement.

Membership and ``user.*`` events gather in batches (``TRANSLATOR_BATCH_SIZE``, or what arrived within
``TRANSLATOR_BATCH_WAIT_MS``) and are planned together; sync requests, write-backs and group events are handled one
at a time, beside the batches. Either way a message is acknowledged only after its plans, its retry or its dead
letter, and the batch's audit message, were confirmed by the broker; a failure is settled by the outcome policy.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from pydantic import TypeAdapter, ValidationError

from okta_bridge.audit import AuditPublisher
from okta_bridge.bus import Batcher, Delivery
from okta_bridge.contracts import AppSyncRequested, OktaEventReceived, Reason, TargetValuesObserved
from okta_bridge.events import GROUP_EVENTS
from okta_bridge.outcomes import Disposition, Failure, failure_of, invalid_message, settle
from okta_bridge.redact import personal_values
from okta_bridge.runtime import Republisher
from okta_bridge.settle import carry_out
from okta_bridge.telemetry import ATTR
from okta_bridge.events import group_id_of, target_id, user_id_of
from translator.handlers import EventResult, Translator
from translator.planning import Source

__all__ = ["TRANSLATOR_MESSAGES", "TranslatorIntake"]

log = logging.getLogger("translator")
# By shape, not routing key (a message back from a retry tier carries the work queue's name as its key); the
# contracts forbid extra fields, so exactly one of them accepts a given message.
TRANSLATOR_MESSAGES = TypeAdapter(AppSyncRequested | TargetValuesObserved | OktaEventReceived)
SOURCE = "translator"


@dataclass
class TranslatorIntake:
    translator: Translator
    republisher: Republisher
    audit: AuditPublisher
    batch_size: int = 200
    batch_wait_s: float = 0.02
    batch_concurrency: int = 2  # batches planned at once: one waiting for Okta does not hold up the next
    singles: int = 4  # syncs, write-backs and group events handled at once

    def __post_init__(self) -> None:
        self._batcher: Batcher[tuple[Delivery, OktaEventReceived]] = Batcher(
            self._plan_batch, self.batch_size, self.batch_wait_s, self.batch_concurrency)
        self._singles = asyncio.Semaphore(self.singles)
        self._tasks: set[asyncio.Task] = set()

    def on_delivery(self, delivery: Delivery) -> None:
        try:
            message = TRANSLATOR_MESSAGES.validate_json(delivery.body)
        except ValidationError as exc:
            self._spawn(self._invalid(delivery, exc))
            return
        _describe(delivery, message)
        if isinstance(message, OktaEventReceived) and message.event_type not in GROUP_EVENTS:
            self._batcher.add((delivery, message))
        else:
            self._spawn(self._single(delivery, message))

    def _spawn(self, work) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _plan_batch(self, batch: list[tuple[Delivery, OktaEventReceived]]) -> None:
        try:
            async with self.audit.batch():
                try:
                    sources = [(Source(d, e.event_type, e.event_uuid, d.context()), e) for d, e in batch]
                    results = await self.translator.handle_events(sources)
                except Exception as exc:  # noqa: BLE001 - the database or the broker: every message of the batch
                    log.exception("a batch of %d events failed", len(batch))
                    results = {d: EventResult(exc) for d, _ in batch}
                await asyncio.gather(*(self._settle(d, e, results[d].failure, results[d]) for d, e in batch
                                       if results[d].failure is not None))
        except Exception:  # noqa: BLE001 - a retry or the audit could not be published: nothing is acked
            log.exception("settling a batch of %d events failed; they go back to the queue", len(batch))
            for delivery, _ in batch:
                await delivery.requeue()
            return
        for delivery, _ in batch:
            await delivery.ack()

    async def _single(self, delivery: Delivery, message) -> None:
        async with self._singles:
            try:
                async with self.audit.batch():
                    token = otel_context.attach(delivery.context())  # its work is part of its event's trace
                    try:
                        await self._translate(message)
                        failure = None
                    except Exception as exc:  # noqa: BLE001 - settled by the outcome policy
                        failure = exc
                    finally:
                        otel_context.detach(token)
                    if failure is not None:
                        await self._settle(delivery, message, failure)
            except Exception:  # noqa: BLE001 - a retry or the audit could not be published: not acked
                log.exception("settling a message failed; it goes back to the queue")
                await delivery.requeue()
                return
        await delivery.ack()

    async def _translate(self, message) -> None:
        translator = self.translator
        if isinstance(message, TargetValuesObserved):
            await translator.handle_writeback(message)
        elif isinstance(message, AppSyncRequested) and message.scope == "groups":
            if translator.groups is not None:
                count = await translator.groups.handle_sync(message)
                log.info("group sync of %s (%s): %d group(s) pushed", message.app_id, message.reason, count)
        elif isinstance(message, AppSyncRequested):
            count = await translator.handle_sync(message)
            log.info("full sync of %s (%s): %d user(s) planned", message.app_id, message.reason, count)
        else:
            await translator.handle_event(message)

    async def _settle(self, delivery: Delivery, message, exc: BaseException, result: EventResult | None = None) -> None:
        failure = failure_of(exc, personal_values(message))
        if failure.reason is Reason.INTERNAL:
            log.warning("translation failed (%s); attempt %d", failure.message, delivery.attempt, exc_info=exc)
        verdict = settle(failure, attempt=delivery.attempt, max_attempts=self.republisher.max_attempts)
        if verdict.disposition is Disposition.RETRY:
            log.info("translation will be tried again (%s); attempt %d", failure.message, delivery.attempt)
        fields = dict(_subject(message, result), span=delivery.span)
        await carry_out(verdict, message, delivery.attempt, republisher=self.republisher, audit=self.audit,
                        source=SOURCE, fields=fields)

    async def _invalid(self, delivery: Delivery, exc: ValidationError) -> None:
        failure = invalid_message(exc, "translator: invalid message")
        async with self.audit.batch():
            await carry_out(settle(failure, attempt=delivery.attempt, max_attempts=self.republisher.max_attempts),
                            delivery.body, delivery.attempt, republisher=self.republisher, audit=self.audit,
                            source=SOURCE, fields={})
        await delivery.ack()

    async def close(self) -> None:
        await self._batcher.drain()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _subject(message: Any, result: EventResult | None) -> dict[str, Any]:
    """Who and what a message's retry, hold or dead letter is about, for its audit record: the event, the user and
    the app of the key that failed (a user event names no app: its key's does), or else the event's own; a group
    event's group; a sync's or write-back's app (and user)."""
    fields: dict[str, Any] = dict(event_uuid=getattr(message, "event_uuid", None),
                                  app_id=getattr(message, "app_id", None),
                                  okta_user_id=getattr(message, "okta_user_id", None))
    if isinstance(message, OktaEventReceived):
        fields.update(event_type=message.event_type, app_id=target_id(message, "AppInstance"),
                      okta_user_id=user_id_of(message))
        if message.event_type in GROUP_EVENTS:
            fields["okta_group_id"] = group_id_of(message)
    elif isinstance(message, AppSyncRequested):
        fields["event_type"] = f"sync:{message.reason}"
    if result is not None:
        fields["app_id"] = result.app_id or fields["app_id"]
        fields["okta_user_id"] = result.user_id or fields["okta_user_id"]
    return fields


def _describe(delivery: Delivery, message: Any) -> None:
    if isinstance(message, OktaEventReceived):
        delivery.span.set_attribute(ATTR.EVENT_UUID, message.event_uuid)
        delivery.span.set_attribute(ATTR.EVENT_TYPE, message.event_type)
        if user_id_of(message):
            delivery.span.set_attribute(ATTR.USER_ID, user_id_of(message))
        if target_id(message, "AppInstance"):
            delivery.span.set_attribute(ATTR.APP_ID, target_id(message, "AppInstance"))
    elif getattr(message, "app_id", None):
        delivery.span.set_attribute(ATTR.APP_ID, message.app_id)
