"""MongoDB commands of the async client are spans of their caller's trace, on the stable database conventions,
without the command's values; outside a trace they make none (issue 10, item 3)."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from okta_bridge.mongo import connect
from okta_bridge.telemetry import DeferredRootProcessor, instrument_pymongo
from tests.conftest import MONGODB_URL
from tests.spans import sdk_provider

pytestmark = pytest.mark.integration


async def test_a_command_in_a_trace_is_a_span_of_it_and_one_outside_makes_none(mongo_db):
    provider = sdk_provider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(DeferredRootProcessor(SimpleSpanProcessor(exporter)))
    instrument_pymongo(provider)
    client, db = connect(MONGODB_URL, mongo_db)  # made after: the listener is registered at client creation
    try:
        await db["links"].insert_one({"_id": "k", "user_name": "ann@acme.com"})  # outside a trace: no span
        with trace.get_tracer("test").start_as_current_span("plan") as plan:
            await db["links"].find_one({"user_name": "ann@acme.com"})
    finally:
        await client.close()
    finished = [s for s in exporter.get_finished_spans() if s.name != "plan"]
    assert [s.name for s in finished] == ["find links"]
    [find] = finished
    assert find.parent.span_id == plan.get_span_context().span_id
    assert find.kind is trace.SpanKind.CLIENT
    attributes = dict(find.attributes)
    assert attributes["db.system.name"] == "mongodb" and attributes["db.namespace"] == mongo_db
    assert attributes["db.collection.name"] == "links" and attributes["db.operation.name"] == "find"
    assert "ann@acme.com" not in str(attributes)
