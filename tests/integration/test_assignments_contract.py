"""The assignment store's contract, run against the in-memory fake (``tests/unit/fakes.py``) and the real MongoDB
adapter: the fake the translator's unit tests plan with cannot drift from what the database does."""

from __future__ import annotations

import asyncio
import os

import pytest

from okta_bridge.mongo import connect
from okta_bridge.stores.assignments import Commit, Landing, MembershipChange, MongoAssignments
from tests.unit.fakes import FakeAssignments
from translator.ports import Assignment

pytestmark = pytest.mark.integration

MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
ORG = "https://acme.okta.com"


@pytest.fixture(params=["fake", "mongo"])
async def store(request, mongo_db):
    if request.param == "fake":
        yield FakeAssignments()
        return
    client, db = connect(MONGODB_URL, mongo_db)
    adapter = MongoAssignments(db, ORG)
    await adapter.ensure_indexes()
    yield adapter
    await client.close()


async def plan(store, app_id: str, user_id: str, updated: int = 0, **change) -> tuple[bool, int]:
    """One key planned as a batch of one: read its row, commit the next version. (landed, that version)."""
    row = (await store.read_rows([(app_id, user_id)]))[(app_id, user_id)]
    membership = _change(**change) if change else None
    [landed] = await store.commit([Commit(row, row.version + 1, updated, membership)])
    return landed is Landing.LANDED, row.version + 1


def _change(assigned=None, app_username=None, as_of=None) -> MembershipChange:
    return MembershipChange(assigned, as_of if assigned is not None else None, app_username,
                            as_of if app_username is not None else None)


async def assignment(store, app_id: str, user_id: str) -> Assignment | None:
    return (await store.read_rows([(app_id, user_id)]))[(app_id, user_id)].assignment


async def test_a_key_without_a_row_reads_as_version_zero_unassigned(store):
    row = (await store.read_rows([("0oaA", "00u1")]))[("0oaA", "00u1")]
    assert (row.version, row.assigned, row.built_max, row.assignment) == (0, False, -1, None)


async def test_each_commit_is_the_next_version_per_key(store):
    assert await plan(store, "0oaA", "00u1") == (True, 1)
    assert await plan(store, "0oaA", "00u1") == (True, 2)
    assert await plan(store, "0oaA", "00u2") == (True, 1)
    assert await plan(store, "0oaB", "00u1") == (True, 1)


async def test_of_two_commits_from_one_read_exactly_one_lands(store):
    await plan(store, "0oaA", "00u1")
    row = (await store.read_rows([("0oaA", "00u1")]))[("0oaA", "00u1")]
    first = await store.commit([Commit(row, row.version + 1, 10)])
    second = await store.commit([Commit(row, row.version + 1, 10)])
    assert (first, second) == ([Landing.LANDED], [Landing.CHANGED])


async def test_concurrent_batches_of_one_key_never_commit_one_version_twice(store):
    results = await asyncio.gather(*(plan(store, "0oaA", "00u1") for _ in range(30)))
    versions = [v for landed, v in results if landed]
    assert versions and len(versions) == len(set(versions)), results
    row = (await store.read_rows([("0oaA", "00u1")]))[("0oaA", "00u1")]
    assert row.version == max(versions) == len(versions)


async def test_a_read_older_than_an_earlier_plans_does_not_commit_and_built_max_never_goes_back(store):
    assert (await plan(store, "0oaA", "00u1", updated=100))[0]
    assert not (await plan(store, "0oaA", "00u1", updated=50))[0]
    assert (await plan(store, "0oaA", "00u1", updated=100))[0]  # as new: fine
    row = (await store.read_rows([("0oaA", "00u1")]))[("0oaA", "00u1")]
    assert (row.version, row.built_max) == (2, 100)


async def test_each_row_carries_the_newest_read_any_plan_of_its_user_used_for_any_app(store):
    await plan(store, "0oaB", "00u1", updated=300)
    await plan(store, "0oaA", "00u1", updated=100)
    await plan(store, "0oaA", "00u2", updated=200)
    rows = await store.read_rows([("0oaA", "00u1"), ("0oaC", "00u1"), ("0oaA", "00u2"), ("0oaA", "00u3")])
    assert {k: (r.built_max, r.user_built_max) for k, r in rows.items()} == {
        ("0oaA", "00u1"): (100, 300), ("0oaC", "00u1"): (-1, 300), ("0oaA", "00u2"): (200, 200),
        ("0oaA", "00u3"): (-1, -1)}


async def test_one_failing_commit_of_a_batch_leaves_the_others(store):
    rows = await store.read_rows([("0oaA", f"00u{i}") for i in range(4)])
    await plan(store, "0oaA", "00u2")  # another batch planned 00u2 meanwhile
    landed = await store.commit([Commit(r, r.version + 1, 0) for r in rows.values()])
    assert landed == [Landing.LANDED, Landing.LANDED, Landing.CHANGED, Landing.LANDED]


async def test_a_row_the_database_refuses_alone_leaves_the_batchs_others_committed(store):
    if isinstance(store, FakeAssignments):
        store.refuse.add(("0oaA", "00u2"))
    else:  # the real server refuses one document: a validator, the way a full disk or a schema rule would
        await store._db.command("collMod", "assignments", validator={"user_id": {"$ne": "00u2"}},
                                validationAction="error")
    rows = await store.read_rows([("0oaA", f"00u{i}") for i in range(4)])
    landed = await store.commit([Commit(r, r.version + 1, 0) for r in rows.values()])
    assert landed == [Landing.LANDED, Landing.LANDED, Landing.REFUSED, Landing.LANDED]
    after = await store.read_rows([("0oaA", f"00u{i}") for i in range(4)])
    assert [r.version for r in after.values()] == [1, 1, 0, 1]


async def test_membership_events_out_of_order_end_at_the_newest(store):
    """An add and a remove of one user, published moments apart, planned in the other order: the newest stands."""
    await plan(store, "0oaA", "00u9", assigned=False, as_of=2_000)  # remove, newer
    await plan(store, "0oaA", "00u9", assigned=True, app_username="u9", as_of=1_000)
    # the assignment stays at the newer removal; the username is the newest one known (the removal names none)
    assert await assignment(store, "0oaA", "00u9") == Assignment("0oaA", "00u9", "u9", False)
    await plan(store, "0oaA", "00u9", assigned=True, app_username="u9", as_of=3_000)
    assert await assignment(store, "0oaA", "00u9") == Assignment("0oaA", "00u9", "u9", True)
    await plan(store, "0oaA", "00u9")  # a user event: changes nothing
    assert (await assignment(store, "0oaA", "00u9")).assigned is True


async def test_a_listing_moves_the_row_on_so_a_plan_read_before_it_does_not_commit(store):
    row = (await store.read_rows([("0oaA", "00u1")]))[("0oaA", "00u1")]
    await store.record_listing("0oaA", [("00u1", "ann")], "s1", 1_000)
    assert await store.commit([Commit(row, row.version + 1, 0, _change(assigned=False, as_of=500))]) == [Landing.CHANGED]
    assert await assignment(store, "0oaA", "00u1") == Assignment("0oaA", "00u1", "ann", True)


async def test_a_listing_and_membership_events_end_at_the_newest(store):
    """A listing asked for at t counts as of t: a membership event published later stands against it, an earlier
    one does not; a sync never unassigns a row assigned by an event published after its first page was asked for."""
    await plan(store, "0oaA", "00u1", assigned=False, as_of=5_000)  # removed after the listing below
    await plan(store, "0oaA", "00u2", assigned=False, as_of=1_000)  # removed, then re-added before it
    await store.record_listing("0oaA", [("00u1", "ann"), ("00u2", "bob")], "s1", 3_000)
    assert (await assignment(store, "0oaA", "00u1")).assigned is False
    assert await assignment(store, "0oaA", "00u2") == Assignment("0oaA", "00u2", "bob", True)
    await plan(store, "0oaA", "00u1", assigned=True, app_username="ann", as_of=4_000)  # older than the remove
    assert (await assignment(store, "0oaA", "00u1")).assigned is False

    await plan(store, "0oaA", "00u3", assigned=True, app_username="cy", as_of=7_000)  # added during sync s2
    await plan(store, "0oaA", "00u4", assigned=True, app_username="di", as_of=2_000)  # added, then removed
    await store.record_listing("0oaA", [("00u2", "bob")], "s2", 6_000)
    assert sorted(await store.unassign_missing("0oaA", "s2", 6_000)) == ["00u4"]
    assert (await assignment(store, "0oaA", "00u3")).assigned is True
    assert (await assignment(store, "0oaA", "00u4")).assigned is False
    await plan(store, "0oaA", "00u4", assigned=True, app_username="di", as_of=5_500)
    assert (await assignment(store, "0oaA", "00u4")).assigned is False  # older than the sync that found it gone


async def test_renames_and_listings_end_at_the_newest_username(store):
    await plan(store, "0oaA", "00u1", assigned=True, app_username="ann", as_of=1_000)
    await plan(store, "0oaA", "00u1", app_username="ann3", as_of=3_000)  # renamed twice, newest first
    await plan(store, "0oaA", "00u1", app_username="ann2", as_of=2_000)
    assert (await assignment(store, "0oaA", "00u1")).app_username == "ann3"
    await store.record_listing("0oaA", [("00u1", "ann2")], "s1", 2_500)  # a page asked for before the rename
    assert (await assignment(store, "0oaA", "00u1")).app_username == "ann3"
    await store.record_listing("0oaA", [("00u1", "ann4")], "s2", 4_000)  # renamed again since: the page says so
    assert (await assignment(store, "0oaA", "00u1")).app_username == "ann4"


async def test_values_from_okta_that_look_like_expressions_are_stored_as_text(store):
    await store.record_listing("0oaA", [("00u1", "$ann"), ("00u2", "$$bob")], "s1", 1_000)
    assert (await assignment(store, "0oaA", "00u1")).app_username == "$ann"
    assert (await assignment(store, "0oaA", "00u2")).app_username == "$$bob"
    await plan(store, "0oaA", "00u3", assigned=True, app_username="$$NOW", as_of=2_000)
    assert (await assignment(store, "0oaA", "00u3")).app_username == "$$NOW"


async def test_users_are_routed_to_the_apps_they_are_assigned_to(store):
    await plan(store, "0oaA", "00u1", assigned=True, as_of=1)
    await plan(store, "0oaB", "00u1", assigned=True, as_of=1)
    await plan(store, "0oaA", "00u2", assigned=True, as_of=1)
    rows = await store.for_users(["00u1", "00u2", "00u3"], ["0oaA", "0oaB", "0oaC"])
    assert sorted(a.app_id for a in rows["00u1"]) == ["0oaA", "0oaB"]
    assert [a.app_id for a in rows["00u2"]] == ["0oaA"] and rows["00u3"] == []


# --- the last known app-user profile (appProfile.* values) travels with the row -------------------------------------

async def profile(store, app_id: str, user_id: str) -> dict | None:
    return (await store.read_rows([(app_id, user_id)]))[(app_id, user_id)].app_profile


async def test_listings_app_user_reads_and_write_backs_end_at_the_newest_app_profile(store):
    await store.record_listing("0oaA", [("00u1", "ann")], "s1", 1_000, {"00u1": {"dept": "R&D", "cost": "$7"}})
    assert await profile(store, "0oaA", "00u1") == {"dept": "R&D", "cost": "$7"}  # "$…" stays text
    # a plan without a profile change keeps it (what an event-driven plan reads)
    await plan(store, "0oaA", "00u1", assigned=True, as_of=1_500)
    assert await profile(store, "0oaA", "00u1") == {"dept": "R&D", "cost": "$7"}
    # an app-user read (as of 3_000) replaces it; a page asked for before that read does not
    row = (await store.read_rows([("0oaA", "00u1")]))[("0oaA", "00u1")]
    change = MembershipChange(app_profile={"dept": "Ops"}, app_profile_as_of=3_000)
    assert await store.commit([Commit(row, row.version + 1, 0, change)]) == [Landing.LANDED]
    await store.record_listing("0oaA", [("00u1", "ann")], "s2", 2_000, {"00u1": {"dept": "R&D"}})
    assert await profile(store, "0oaA", "00u1") == {"dept": "Ops"}
    # an older read folded in later loses too
    row = (await store.read_rows([("0oaA", "00u1")]))[("0oaA", "00u1")]
    stale = MembershipChange(app_profile={"dept": "Old"}, app_profile_as_of=2_500)
    assert await store.commit([Commit(row, row.version + 1, 0, stale)]) == [Landing.LANDED]
    assert await profile(store, "0oaA", "00u1") == {"dept": "Ops"}
    # the bridge's own write-back merges its values and moves the row on (a plan read before it re-reads)
    row = (await store.read_rows([("0oaA", "00u1")]))[("0oaA", "00u1")]
    await store.merge_app_profile("0oaA", "00u1", {"title": "Lead"}, 4_000)
    assert await profile(store, "0oaA", "00u1") == {"dept": "Ops", "title": "Lead"}
    assert await store.commit([Commit(row, row.version + 1, 0)]) == [Landing.CHANGED]
    # a page asked for since replaces the whole profile, as Okta lists it
    await store.record_listing("0oaA", [("00u1", "ann")], "s3", 5_000, {"00u1": {"dept": "Sales"}})
    assert await profile(store, "0oaA", "00u1") == {"dept": "Sales"}


async def test_a_listing_without_profiles_keeps_the_known_one_and_a_row_without_one_reads_none(store):
    await store.record_listing("0oaA", [("00u1", "ann")], "s1", 1_000, {"00u1": {"dept": "R&D"}})
    await store.record_listing("0oaA", [("00u1", "ann"), ("00u2", "bob")], "s2", 2_000)
    assert await profile(store, "0oaA", "00u1") == {"dept": "R&D"}
    assert await profile(store, "0oaA", "00u2") is None
    await store.merge_app_profile("0oaA", "00u2", {"title": "Lead"}, 3_000)
    assert await profile(store, "0oaA", "00u2") == {"title": "Lead"}
