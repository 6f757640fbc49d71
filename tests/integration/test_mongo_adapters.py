"""The MongoDB adapters of the dispatcher, the translator and the poller against the real MongoDB-wire server."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest

from okta_bridge.contracts import PlanAction, ScimOperationPlanned
from okta_bridge.mongo import connect
from okta_bridge.stores.meta import OrgMismatchError, claim_org
from okta_bridge.stores.cursor import MongoPollerState
from queue_poller.ports import CursorState
from okta_bridge.stores.links import LinkWrite, MongoLinks
from scim_dispatcher.ports import Link
from okta_bridge.stores.assignments import MongoAssignments
from translator.ports import Assignment

pytestmark = pytest.mark.integration

MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
ORG = "https://acme.okta.com"
OTHER_ORG = "https://globex.okta.com"


@pytest.fixture
async def db(mongo_db):
    client, database = connect(MONGODB_URL, mongo_db)
    await MongoAssignments(database, ORG).ensure_indexes()
    await MongoPollerState(database, ORG).ensure_indexes()
    yield database
    await client.close()


def plan(version: int, user: str = "00u1xxxxxxxxxxxxxxxx", org: str = ORG) -> ScimOperationPlanned:
    return ScimOperationPlanned(org=org, app_id="0oaAPPxxxxxxxxxxxxxx", okta_user_id=user, version=version,
                                action=PlanAction.UPSERT, unique_value=f"{user}@example.com", cause="test")


# --- dispatcher: links ----------------------------------------------------------------------------------------------

async def test_link_save_is_conditional_on_the_plan_version(db):
    links = MongoLinks(db, ORG)
    assert await links.get("0oaAPPxxxxxxxxxxxxxx", "00u1xxxxxxxxxxxxxxxx") is None

    assert await links.save(plan(2), "t-1", True) is True
    assert await links.get("0oaAPPxxxxxxxxxxxxxx", "00u1xxxxxxxxxxxxxxxx") == Link("t-1", 2, True)

    assert await links.save(plan(1), "t-OLD", False) is False  # older plan: stale
    assert await links.save(plan(2), "t-SAME", False) is False  # the same plan again: already applied
    assert await links.get("0oaAPPxxxxxxxxxxxxxx", "00u1xxxxxxxxxxxxxxxx") == Link("t-1", 2, True)

    assert await links.save(plan(3), None, False) is True  # newer: applied, target id kept
    assert await links.get("0oaAPPxxxxxxxxxxxxxx", "00u1xxxxxxxxxxxxxxxx") == Link("t-1", 3, False)

    # other users and other orgs are other keys
    assert await links.save(plan(1, user="00u2xxxxxxxxxxxxxxxx"), "t-2", True) is True
    assert await MongoLinks(db, OTHER_ORG).get("0oaAPPxxxxxxxxxxxxxx", "00u1xxxxxxxxxxxxxxxx") is None
    assert await links.get("0oaAPPxxxxxxxxxxxxxx", "00u2xxxxxxxxxxxxxxxx") == Link("t-2", 1, True)


async def test_the_links_user_name_is_kept_until_a_write_names_another(db):
    """The account's userName rides with the link (a pushed group member's display); a write without one keeps it."""
    links = MongoLinks(db, ORG)
    assert await links.save_many([LinkWrite("0oaAPP", "00uN", 1, "t-1", True, user_name="ann@example.com")]) == [True]
    assert (await links.get("0oaAPP", "00uN")).user_name == "ann@example.com"
    assert await links.save_many([LinkWrite("0oaAPP", "00uN", 2, None, False)]) == [True]
    assert (await links.get("0oaAPP", "00uN")).user_name == "ann@example.com"
    assert await links.save_many([LinkWrite("0oaAPP", "00uN", 3, None, True, user_name="ann.b@example.com")]) == [True]
    assert (await links.get_many("0oaAPP", ["00uN"]))["00uN"].user_name == "ann.b@example.com"
    assert "example.com" not in repr(await links.get("0oaAPP", "00uN"))


async def test_concurrent_saves_leave_the_newest_version(db):
    links = MongoLinks(db, ORG)
    for round_ in range(10):
        user = f"00uC{round_:x<16}"
        results = await asyncio.gather(links.save(plan(5, user), "t-new", True),
                                       links.save(plan(3, user), "t-old", False))
        assert (await links.get("0oaAPPxxxxxxxxxxxxxx", user)) == Link("t-new", 5, True), results
        assert results[0] is True  # v5 always wins: either it was first, or it overwrote v3
    # many writers at once: exactly the highest version survives, and it reported success
    user = "00uMANYxxxxxxxxxxxxx"
    versions = list(range(1, 21))
    results = await asyncio.gather(*(links.save(plan(v, user), f"t{v}", True) for v in reversed(versions)))
    assert (await links.get("0oaAPPxxxxxxxxxxxxxx", user)).applied_version == 20
    assert results[0] is True
    assert (await db.links.count_documents({"okta_user_id": user})) == 1


async def test_holder_of_names_another_users_link_of_the_same_app_only(db):
    """The adoption guard's question: whose link holds this account (never the asking user's own, never another
    org's)."""
    links = MongoLinks(db, ORG)
    await links.ensure_indexes()
    await links.save(plan(1, user="00u2xxxxxxxxxxxxxxxx"), "t-9", True)
    await MongoLinks(db, OTHER_ORG).save(plan(1, user="00u3xxxxxxxxxxxxxxxx", org=OTHER_ORG), "t-8", True)
    assert await links.holder_of("0oaAPPxxxxxxxxxxxxxx", "t-9", other_than="00u1xxxxxxxxxxxxxxxx") == \
        "00u2xxxxxxxxxxxxxxxx"
    assert await links.holder_of("0oaAPPxxxxxxxxxxxxxx", "t-9", other_than="00u2xxxxxxxxxxxxxxxx") is None
    assert await links.holder_of("0oaOTHERxxxxxxxxxxxx", "t-9", other_than="00u1xxxxxxxxxxxxxxxx") is None
    assert await links.holder_of("0oaAPPxxxxxxxxxxxxxx", "t-8", other_than="00u1xxxxxxxxxxxxxxxx") is None


# --- translator: plan versions and assignments ----------------------------------------------------------------------

async def test_record_listing_and_unassign_missing(db):
    assignments = MongoAssignments(db, ORG)
    t1, t2 = 1_000_000, 2_000_000  # Okta's time before each sync's first page, microseconds
    await assignments.record_listing("0oaAPP", [("00u1", "ann"), ("00u2", "bob"), ("00u3", None)], "sync-1", t1)
    assert await assignments.unassign_missing("0oaAPP", "sync-1", t1) == []
    assert await assignments.get("0oaAPP", "00u3") == Assignment("0oaAPP", "00u3", None, True)
    await assignments.record_listing("0oaAPP", [], "sync-1", t1)  # an empty page is fine

    # another app and another org are not touched by this app's sync
    await assignments.record_listing("0oaOTHER", [("00u1", "ann")], "sync-x", t1)
    await MongoAssignments(db, OTHER_ORG).record_listing("0oaAPP", [("00u2", "bob")], "sync-o", t1)

    await assignments.record_listing("0oaAPP", [("00u1", "ann.new")], "sync-2", t2)
    await assignments.record_listing("0oaAPP", [("00u3", "cat")], "sync-2", t2)
    assert sorted(await assignments.unassign_missing("0oaAPP", "sync-2", t2)) == ["00u2"]
    assert await assignments.get("0oaAPP", "00u2") == Assignment("0oaAPP", "00u2", "bob", False)
    assert await assignments.get("0oaAPP", "00u1") == Assignment("0oaAPP", "00u1", "ann.new", True)
    assert await assignments.get("0oaAPP", "00u3") == Assignment("0oaAPP", "00u3", "cat", True)
    assert await assignments.unassign_missing("0oaAPP", "sync-2", t2) == []  # already unassigned: reported once

    assert await assignments.get("0oaOTHER", "00u1") == Assignment("0oaOTHER", "00u1", "ann", True)
    assert await MongoAssignments(db, OTHER_ORG).get("0oaAPP", "00u2") == Assignment("0oaAPP", "00u2", "bob", True)
    assert {a.app_id for a in (await assignments.for_users(["00u1"], ["0oaAPP", "0oaOTHER", "0oaNONE"]))["00u1"]} == {
        "0oaAPP", "0oaOTHER"}

    # re-listed after being removed: assigned again
    await assignments.record_listing("0oaAPP", [("00u2", "bob")], "sync-3", 3_000_000)
    assert (await assignments.get("0oaAPP", "00u2")).assigned is True


# --- poller: cursor, dedupe, assignment look-ups --------------------------------------------------------------------

async def test_cursor_round_trip(db):
    state = MongoPollerState(db, ORG)
    assert await state.load() is None
    at = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
    saved = CursorState("https://acme.okta.com/api/v1/logs?after=abc", at, ["0oa1", "0oa2"])
    await state.save(saved)
    assert await state.load() == saved
    moved = CursorState("https://acme.okta.com/api/v1/logs?after=def", at + timedelta(seconds=5), ["0oa1"],
                        resume_from=at - timedelta(seconds=3))  # the newest `published` read, for a migration
    await state.save(moved)
    assert await state.load() == moved
    assert await MongoPollerState(db, OTHER_ORG).load() is None
    await state.save(CursorState(None, None, []))
    assert await state.load() == CursorState(None, None, [])


async def test_unseen_and_mark_seen_dedupe(db):
    state = MongoPollerState(db, ORG)
    assert await state.unseen([]) == set()
    assert await state.unseen(["e1", "e2", "e3"]) == {"e1", "e2", "e3"}
    await state.mark_seen(["e1", "e2"])
    assert await state.unseen(["e1", "e2", "e3"]) == {"e3"}
    await state.mark_seen(["e1", "e2"])  # a re-read page: no error
    await state.mark_seen(["e2", "e3", "e4"])  # partly seen: the new ones are still recorded
    await state.mark_seen([])
    assert await state.unseen(["e1", "e2", "e3", "e4", "e5"]) == {"e5"}
    assert await MongoPollerState(db, OTHER_ORG).unseen(["e1"]) == {"e1"}  # per org
    assert await db.seen_events.count_documents({}) == 4
    # the dedupe set expires: a TTL index on `at`
    ttl = [ix for ix in (await (await db.seen_events.list_indexes()).to_list()) if "expireAfterSeconds" in ix]
    assert [(ix["key"], ix["expireAfterSeconds"]) for ix in ttl] == [({"at": 1}, 14 * 86400)]


async def test_concurrent_mark_seen_of_the_same_page(db):
    state = MongoPollerState(db, ORG)
    page = [f"ev{i}" for i in range(30)]
    await asyncio.gather(*(state.mark_seen(page) for _ in range(5)))
    assert await state.unseen(page) == set()
    assert await db.seen_events.count_documents({}) == 30


async def test_users_with_assignments(db):
    assignments = MongoAssignments(db, ORG)
    await assignments.record_listing("0oaA", [("00u1", "a"), ("00u2", "b")], "s1", 1)
    await assignments.record_listing("0oaB", [("00u3", "c")], "s1", 1)
    await MongoAssignments(db, OTHER_ORG).record_listing("0oaA", [("00u4", "d")], "s1", 1)
    state = MongoPollerState(db, ORG)
    assert await state.users_with_assignments(["00u1", "00u3", "00u4", "00u9"], ["0oaA"]) == {"00u1"}
    assert await state.users_with_assignments(["00u1", "00u3", "00u4"], ["0oaA", "0oaB"]) == {"00u1", "00u3"}
    assert await state.users_with_assignments([], ["0oaA"]) == set()
    assert await state.users_with_assignments(["00u1"], []) == set()


# --- the database belongs to one org --------------------------------------------------------------------------------

async def test_claim_org_refuses_another_org(db):
    await claim_org(db, ORG)
    await claim_org(db, ORG)  # the same org again (a restart, another service): fine
    with pytest.raises(OrgMismatchError) as refused:
        await claim_org(db, OTHER_ORG)
    message = str(refused.value)
    assert ORG in message and OTHER_ORG in message and "MONGODB_DB" in message
    assert (await db.bridge_meta.find_one({"_id": "org"}))["org"] == ORG


async def test_concurrent_claims_of_a_fresh_database_admit_one_org(db):
    results = await asyncio.gather(claim_org(db, ORG), claim_org(db, ORG), claim_org(db, OTHER_ORG),
                                   claim_org(db, ORG), return_exceptions=True)
    owner = (await db.bridge_meta.find_one({"_id": "org"}))["org"]
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(f, OrgMismatchError) for f in failures), failures
    assert len(failures) == (3 if owner == OTHER_ORG else 1)


