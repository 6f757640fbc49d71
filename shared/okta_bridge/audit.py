"""The audit port: every service reports each step of a change; the audit-recorder stores them in batches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from faststream.rabbit import RabbitBroker

from okta_bridge.contracts import AuditRecorded, AuditStep
from okta_bridge.telemetry import current_trace_id
from okta_bridge.topology import AUDIT_EXCHANGE

__all__ = ["Audit", "BrokerAudit"]


class Audit(Protocol):
    async def record(self, step: AuditStep, **fields: Any) -> None: ...


class BrokerAudit:
    def __init__(self, broker: RabbitBroker, service: str, org: str) -> None:
        self._broker = broker
        self._service = service
        self._org = org

    async def record(self, step: AuditStep, **fields: Any) -> None:
        record = AuditRecorded(
            at=datetime.now(UTC), service=self._service, step=step, org=self._org,
            trace_id=current_trace_id(), **fields,
        )
        await self._broker.publish(record, exchange=AUDIT_EXCHANGE, persist=True)
