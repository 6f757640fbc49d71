"""The audit-recorder's batches: a record the database refuses sends only its own message through the retry tiers;
the other messages of the batch are acknowledged. (A whole failed write, and a message written twice, are proven on
the real database in tests/integration/test_audit_store.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

from opentelemetry import context as otel_context
from opentelemetry import trace

from audit_recorder.batcher import Recorder
from okta_bridge.bus import Delivery
from okta_bridge.contracts import AuditBatch, AuditRecorded, AuditStep, Reason
from tests.unit.fakes import FakeRaw

ORG = "https://acme.okta.com"


class FakeRepublisher:
    max_attempts = 5

    def __init__(self) -> None:
        self.retried: list[AuditBatch | AuditRecorded] = []
        self.dead: list[str] = []

    async def retry(self, message, attempt, retry_after_s=None, routing_key="") -> None:
        self.retried.append(message)

    async def dead_letter(self, message, reason, attempt, source) -> None:
        self.dead.append(reason)


class RefusingStore:
    """Refuses the records whose event_uuid it is told to, the way an unordered insert_many reports them."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse, self.written = refuse, []

    async def insert(self, docs):
        failed = [i for i, d in enumerate(docs) if d["event_uuid"] in self.refuse]
        self.written += [d["event_uuid"] for i, d in enumerate(docs) if i not in failed]
        return failed


def batch(*uuids: str) -> AuditBatch:
    at = datetime(2026, 12, 6, tzinfo=UTC)
    return AuditBatch(records=[AuditRecorded(at=at, service="translator", step=AuditStep.PLANNED, org=ORG,
                                             event_uuid=u, reason=Reason.PLANNED) for u in uuids])


def delivery(message: AuditBatch) -> Delivery:
    span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    return Delivery(FakeRaw(message.model_dump_json().encode(), "audit"), "audit", 1, otel_context.Context(), span)


async def test_a_record_the_database_refuses_retries_its_own_message_alone():
    store, republisher = RefusingStore({"b2"}), FakeRepublisher()
    recorder = Recorder(store, republisher, batch_size=2)  # several writes per batch: indexes map across them
    messages = [batch("a1", "a2"), batch("b1", "b2", "b3"), batch("c1")]
    deliveries = [delivery(m) for m in messages]
    await recorder._write([(d, m) for d, m in zip(deliveries, messages)])
    assert [d.raw.acked for d in deliveries] == [True, True, True]  # the refused one's message went to a retry tier
    assert republisher.retried == [messages[1]] and republisher.dead == []
    assert store.written == ["a1", "a2", "b1", "b3", "c1"]
