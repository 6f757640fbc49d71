"""The audit port: every service reports each step of a change; the audit-recorder stores them in batches.

Records travel as :class:`~okta_bridge.contracts.AuditBatch` messages. Inside :meth:`AuditPublisher.batch` (a batch
of work) they gather and go out as one message when the batch ends, before its deliveries are acknowledged;
outside, each record goes out at once. Each record names its own trace (the current one, or the ``trace_id`` given).
"""

from __future__ import annotations

import contextvars
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, AsyncIterator, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace

from okta_bridge.bus import Publisher
from okta_bridge.contracts import AuditBatch, AuditRecorded, AuditStep
from okta_bridge.telemetry import current_trace_id
from okta_bridge.metrics import OUTCOMES
from okta_bridge.topology import AUDIT_EXCHANGE

__all__ = ["Audit", "AuditPublisher", "MAX_RECORDS"]

MAX_RECORDS = 500  # records per message
_GATHERING: contextvars.ContextVar[list[tuple[AuditRecorded, trace.SpanContext]] | None] = contextvars.ContextVar(
    "audit_batch", default=None)


class Audit(Protocol):
    async def record(self, step: AuditStep, **fields: Any) -> None: ...


class AuditPublisher:
    def __init__(self, publisher: Publisher, service: str, org: str) -> None:
        self._publisher, self._service, self._org = publisher, service, org

    async def record(self, step: AuditStep, **fields: Any) -> None:
        """``span``: the span the step belongs to (default: the current one); ``trace_id`` follows from it."""
        span = fields.pop("span", None) or trace.get_current_span()
        fields.setdefault("trace_id", None)
        fields["trace_id"] = fields["trace_id"] or _trace_id(span) or current_trace_id()
        record = AuditRecorded(at=datetime.now(UTC), service=self._service, step=step, org=self._org, **fields)
        if record.reason is not None:  # configured apps and the Reason codes only: bounded labels
            OUTCOMES.labels(record.app_id or "", record.reason.value).inc()
        gathering = _GATHERING.get()
        if gathering is not None:
            gathering.append((record, span.get_span_context()))
        else:
            await self._send([(record, span.get_span_context())])

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Records made inside (by this task and the tasks it starts) go out together at the end."""
        records: list[tuple[AuditRecorded, trace.SpanContext]] = []
        token = _GATHERING.set(records)
        try:
            yield
        finally:
            _GATHERING.reset(token)
            for start in range(0, len(records), MAX_RECORDS):
                await self._send(records[start:start + MAX_RECORDS])

    async def _send(self, records: list[tuple[AuditRecorded, trace.SpanContext]]) -> None:
        # shared by many events: a root span of its own, linked to the span each record belongs to
        links = list({(c.trace_id, c.span_id): trace.Link(c) for _, c in records if c.is_valid}.values())[:128]
        await self._publisher.publish(AuditBatch(records=tuple(r for r, _ in records)), exchange=AUDIT_EXCHANGE.name,
                                      routing_key="", context=otel_context.Context(), links=links)


def _trace_id(span: trace.Span) -> str | None:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
