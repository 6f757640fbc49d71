"""Audit records are written in batches: the records of many messages in a few ``insert_many`` calls, and each
message is acknowledged only after every record it carries was written. A failed write (the database away) sends
each message of the batch through the retry tiers (``AUDIT_MAX_ATTEMPTS``, then the dead letters): never dropped,
never a hot requeue. A record the database refuses alone sends only its own message through the tiers. Each record's
``_id`` is made from its content, so a message written again adds none of its records twice."""

from __future__ import annotations

import logging

from opentelemetry import context as otel_context
from opentelemetry import trace
from pydantic import TypeAdapter, ValidationError

from okta_bridge.bus import Batcher, Delivery
from okta_bridge.contracts import AuditBatch, AuditRecorded
from okta_bridge.runtime import Republisher
from okta_bridge.stores.audit import AuditStore, with_ids

log = logging.getLogger(__name__)
tracer = trace.get_tracer("audit_recorder")
AUDIT_MESSAGES = TypeAdapter(AuditBatch | AuditRecorded)  # single records: dead letters from older releases
MESSAGES_IN_HAND = 200  # unacknowledged audit messages (each up to 500 records)
SOURCE = "audit-recorder"

__all__ = ["AUDIT_MESSAGES", "MESSAGES_IN_HAND", "Recorder"]


class Recorder:
    def __init__(self, store: AuditStore, republisher: Republisher, batch_size: int = 500,
                 batch_delay_s: float = 0.2) -> None:
        self._store, self._republisher, self._records_per_write = store, republisher, batch_size
        self._batcher: Batcher[tuple[Delivery, AuditBatch | AuditRecorded | None]] = Batcher(
            self._write, batch_size, batch_delay_s, weight=_records)
        self.batches = 0

    def on_delivery(self, delivery: Delivery) -> None:
        try:
            message: AuditBatch | AuditRecorded | None = AUDIT_MESSAGES.validate_json(delivery.body)
        except ValidationError:
            message = None
        self._batcher.add((delivery, message))

    async def _write(self, items: list[tuple[Delivery, AuditBatch | AuditRecorded | None]]) -> None:
        try:
            await self._write_or_retry(items)
        except Exception:  # noqa: BLE001 - not even a retry could be published (the broker is away): not acked
            log.exception("an audit batch could not be settled; its messages go back to the queue")
            for delivery, _ in items:
                await delivery.requeue()  # no-op for those already settled

    async def _write_or_retry(self, items: list[tuple[Delivery, AuditBatch | AuditRecorded | None]]) -> None:
        readable: list[tuple[Delivery, AuditBatch | AuditRecorded]] = []
        for delivery, message in items:
            if message is not None:
                readable.append((delivery, message))
                continue
            await self._republisher.dead_letter(delivery.body, "invalid audit message: not an audit batch or record",
                                                delivery.attempt, SOURCE)
            await delivery.ack()
        if not readable:
            return
        docs, owner = [], []  # owner: the index in ``readable`` of each record's message
        for i, (_, m) in enumerate(readable):
            records = with_ids([r.model_dump(mode="python")
                                for r in (m.records if isinstance(m, AuditBatch) else (m,))])
            docs += records
            owner += [i] * len(records)
        links = [trace.Link(d.span.get_span_context()) for d, _ in readable][:128]
        failed: set[int] = set()  # messages with a record that did not go in
        # shared by many events: its own trace, linked to each message's consume span
        with tracer.start_as_current_span("audit insert_many", context=otel_context.Context(), links=links) as span:
            span.set_attribute("audit.batch.size", len(docs))
            try:
                for start in range(0, len(docs), self._records_per_write):
                    for index in await self._store.insert(docs[start:start + self._records_per_write]):
                        failed.add(owner[start + index])
            except Exception as exc:  # noqa: BLE001 - tried again through the tiers, never dropped
                # records already written are not written twice: each has an _id made from its content
                log.warning("audit write of %d records failed: %s", len(docs), exc)
                for delivery, message in readable:
                    await self._retry(delivery, message, exc)
                return
        self.batches += 1
        for i, (delivery, message) in enumerate(readable):
            if i in failed:  # this message alone goes through the tiers; its written records stay as they are
                await self._retry(delivery, message, RuntimeError("the database refused one of its records"))
            else:
                await delivery.ack()

    async def _retry(self, delivery: Delivery, message: AuditBatch | AuditRecorded, exc: Exception) -> None:
        if delivery.attempt >= self._republisher.max_attempts:
            await self._republisher.dead_letter(message, f"audit write failed {delivery.attempt} times: {exc}",
                                                delivery.attempt, SOURCE)
        else:
            await self._republisher.retry(message, delivery.attempt)
        await delivery.ack()

    async def close(self) -> None:
        await self._batcher.drain()


def _records(item: tuple[Delivery, AuditBatch | AuditRecorded | None]) -> int:
    message = item[1]
    return len(message.records) if isinstance(message, AuditBatch) else 1
