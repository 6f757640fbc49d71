"""The audit store on the real MongoDB-wire server: a message written again (a retry after a write that failed part
way) adds none of its records twice, and records keep sorting by time under their content-made ``_id``."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from okta_bridge.contracts import AuditRecorded, AuditStep, Reason
from okta_bridge.mongo import connect
from okta_bridge.stores.audit import AuditStore

pytestmark = pytest.mark.integration
MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
T0 = datetime(2026, 12, 6, 12, tzinfo=UTC)


@pytest.fixture
async def db(mongo_db):
    client, database = connect(MONGODB_URL, mongo_db)
    yield database
    await client.close()


def docs(*uuids: str, at: datetime = T0) -> list[dict]:
    return [AuditRecorded(at=at, service="scim-dispatcher", step=AuditStep.APPLIED, org="https://acme.okta.com",
                          event_uuid=u, reason=Reason.APPLIED).model_dump(mode="python") for u in uuids]


async def test_records_written_again_are_not_stored_twice(db):
    store = AuditStore(db)
    assert await store.insert(docs("e1", "e2")) == []  # a write that got this far before failing
    assert await store.insert(docs("e1", "e2", "e3", "e1")) == []  # the retried message: e1 twice in it, on purpose
    stored = sorted([d["event_uuid"] async for d in db.audit.find({})])
    assert stored == ["e1", "e1", "e2", "e3"]  # the two identical records of one write stay two, none doubled


async def test_a_record_of_any_time_gets_an_id(db):
    """Times an ObjectId's four bytes cannot hold (before 1970, after 2106: a replayed record may carry any) are
    held to what they can hold; the record is written, not its whole batch refused."""
    store = AuditStore(db)
    assert await store.insert(docs("old", at=datetime(1960, 1, 1, tzinfo=UTC))) == []
    assert await db.audit.count_documents({"event_uuid": "old"}) == 1


async def test_content_made_ids_sort_by_the_records_time(db):
    store = AuditStore(db)
    await store.insert(docs("late", at=T0 + timedelta(seconds=5)) + docs("early", at=T0))
    ids = [d["event_uuid"] async for d in db.audit.find({}).sort("_id", 1)]
    assert ids == ["early", "late"]
