"""GroupState against the real MongoDB-wire server: membership facts versioned by Okta time (newest wins), listings
that mark the members they no longer show as gone, conditional ``applied_version``, pushed groups, org isolation."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest

from okta_bridge.stores.group_links import FencedOut, MongoGroupLinks
from okta_bridge.stores.groups import GroupState, micros
from okta_bridge.mongo import connect

pytestmark = pytest.mark.integration

MONGODB_URL = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
ORG = "https://acme.okta.com"
OTHER_ORG = "https://globex.okta.com"
APP, APP2 = "0oaJIRA", "0oaWIKI"
G1, G2, G3 = "00gSALES", "00gOPS", "00gDEV"


@pytest.fixture
async def db(mongo_db):
    client, database = connect(MONGODB_URL, mongo_db)
    yield database
    await client.close()


@pytest.fixture
async def state(db) -> GroupState:
    s = GroupState(db, ORG)
    await s.ensure_indexes()
    return s


async def facts(state: GroupState, app: str = APP, group: str = G1) -> dict[str, tuple[bool, int]]:
    return {u: (d["member"], d["version"]) for u, d in (await state.all_members(app, group)).items()}


# --- membership facts -----------------------------------------------------------------------------------------------

async def test_micros_is_the_okta_time_in_microseconds():
    assert micros(datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)) == 1767323045_123000
    assert micros(datetime(2026, 1, 2, 3, 4, 5, 124000, tzinfo=UTC)) > micros(datetime(2026, 1, 2, 3, 4, 5, 123000,
                                                                                        tzinfo=UTC))


async def test_an_older_fact_never_overwrites_a_newer_one(state):
    assert await state.want(APP, G1, [("u1", True), ("u2", True)], 100) == ["u1", "u2"]
    assert await facts(state) == {"u1": (True, 100), "u2": (True, 100)}

    # u1's remove is older than what is stored: dropped; u3 is new: written
    changed = await state.want(APP, G1, [("u1", False), ("u3", True)], 50)
    assert changed == ["u3"]
    assert await facts(state) == {"u1": (True, 100), "u2": (True, 100), "u3": (True, 50)}

    # the same version again (a redelivered event) changes nothing
    assert await state.want(APP, G1, [("u1", False)], 100) == []
    assert (await facts(state))["u1"] == (True, 100)

    # a newer fact lands, and is reported as changed
    assert await state.want(APP, G1, [("u1", False), ("u2", True)], 101) == ["u1", "u2"]
    assert await facts(state) == {"u1": (False, 101), "u2": (True, 101), "u3": (True, 50)}

    assert await state.want(APP, G1, [], 500) == []


async def test_out_of_order_facts_end_at_the_newest(state):
    order = [(30, True), (10, False), (50, False), (20, True), (40, True)]
    results = [await state.want(APP, G1, [("u1", member)], version) for version, member in order]
    assert results == [["u1"], [], ["u1"], [], []]
    assert await facts(state) == {"u1": (False, 50)}


async def test_concurrent_first_writes_of_one_fact_leave_the_newest(state):
    """Two writers of a fact nobody stored yet (a listing and an event at once): the newer one must win."""
    for round_ in range(10):
        user = f"uC{round_}"
        older, newer = await asyncio.gather(state.want(APP, G1, [(user, True)], 300),
                                            state.want(APP, G1, [(user, False)], 500))
        assert (await state.members(APP, G1, [user]))[user]["version"] == 500, (older, newer)
        assert (await state.members(APP, G1, [user]))[user]["member"] is False
        assert newer == [user]


async def test_a_listing_marks_members_it_did_not_show_as_gone(state):
    await state.want(APP, G1, [("u1", True), ("u2", True), ("u3", True)], 100, listing="L1")
    await state.want(APP, G1, [("u4", False)], 110)  # known as not a member: not counted as leaving

    # the second listing (stamped 200) shows u1 only
    await state.want(APP, G1, [("u1", True)], 200, listing="L2")
    assert await state.left_since_listing(APP, G1, "L2", 200) == 2
    assert await facts(state) == {"u1": (True, 200), "u2": (False, 200), "u3": (False, 200), "u4": (False, 110)}
    assert (await state.members(APP, G1, ["u2"]))["u2"]["listing"] == "L2"

    # the same listing again: nothing left
    assert await state.left_since_listing(APP, G1, "L2", 200) == 0


async def test_a_listing_does_not_undo_an_event_newer_than_itself(state):
    await state.want(APP, G1, [("u1", True), ("u2", True)], 100, listing="L1")
    await state.want(APP, G1, [("u3", True)], 250)  # added by an event after the next listing's stamp
    await state.want(APP, G1, [("u4", True)], 150)  # added by an event before it: the listing is newer
    await state.want(APP, G1, [("u2", False)], 260)  # removed by an event after the listing

    # listing L2 stamped 200 shows u1 and u2 (u2 was read before its removal)
    assert await state.want(APP, G1, [("u1", True), ("u2", True)], 200, listing="L2") == ["u1"]
    assert await state.left_since_listing(APP, G1, "L2", 200) == 1  # u4 only
    assert await facts(state) == {"u1": (True, 200), "u2": (False, 260), "u3": (True, 250), "u4": (False, 200)}


async def test_listings_of_other_groups_and_apps_are_untouched(state):
    await state.want(APP, G1, [("u1", True)], 100, listing="L1")
    await state.want(APP, G2, [("u1", True)], 100, listing="L1")
    await state.want(APP2, G1, [("u1", True)], 100, listing="L1")
    await state.want(APP, G1, [("u9", True)], 200, listing="L2")
    assert await state.left_since_listing(APP, G1, "L2", 200) == 1
    assert await facts(state) == {"u1": (False, 200), "u9": (True, 200)}
    assert await facts(state, APP, G2) == {"u1": (True, 100)}
    assert await facts(state, APP2, G1) == {"u1": (True, 100)}


async def test_mark_applied_is_conditional_and_never_goes_back(state):
    await state.want(APP, G1, [("u1", True), ("u2", True)], 100)
    assert {u: d["applied_version"] for u, d in (await state.all_members(APP, G1)).items()} == {"u1": 0, "u2": 0}

    await state.mark_applied(APP, G1, [("u1", 100)])
    await state.mark_applied(APP, G1, [("u1", 40), ("u2", 100)], error="add refused by the target")
    members = await state.all_members(APP, G1)
    assert members["u1"]["applied_version"] == 100 and members["u1"]["error"] is None  # the older mark lost
    assert members["u2"]["applied_version"] == 100 and members["u2"]["error"] == "add refused by the target"

    # a newer fact keeps what was applied; the next mark moves it forward
    await state.want(APP, G1, [("u1", False)], 150)
    assert (await state.members(APP, G1, ["u1"]))["u1"]["applied_version"] == 100
    await state.mark_applied(APP, G1, [("u1", 150)])
    assert (await state.members(APP, G1, ["u1"]))["u1"]["applied_version"] == 150

    # marking a member with no fact creates nothing, and an empty mark is fine
    await state.mark_applied(APP, G1, [("ghost", 999)])
    await state.mark_applied(APP, G1, [])
    assert set(await state.all_members(APP, G1)) == {"u1", "u2"}


async def test_a_partition_owner_fenced_off_by_a_newer_one_writes_no_group_state(db, state):
    """Every database write of a group plan carries its partition's fencing token: once a newer owner (token 7)
    wrote, an older one (token 6) marks no member, saves, relinks and creates nothing, even for a newer version."""
    await state.want(APP, G1, [("u1", True), ("u2", True)], 100)
    await state.mark_applied(APP, G1, [("u1", 100)], fence=7)
    await state.mark_applied(APP, G1, [("u1", 150), ("u2", 100)], fence=6)
    members = await state.all_members(APP, G1)
    assert (members["u1"]["applied_version"], members["u2"]["applied_version"]) == (100, 100)  # u2 had no fence yet
    await state.mark_refused(APP, G1, ["u1"], "refused", fence=6)
    assert (await state.all_members(APP, G1))["u1"]["error"] is None

    links = MongoGroupLinks(db, ORG)
    assert await links.save(APP, G1, "t-1", "Sales", 1, fence=7)
    assert not await links.save(APP, G1, "t-old", "Sales", 2, fence=6)  # newer version, older owner: refused
    with pytest.raises(FencedOut):
        await links.relink(APP, G1, "t-old", fence=6)
    with pytest.raises(FencedOut):
        await links.mark_creating(APP, G1, "Sales", fence=6)
    link = await links.get(APP, G1)
    assert (link.target_id, link.applied_version) == ("t-1", 1)
    assert await links.save(APP, G1, "t-2", "Sales", 2, fence=8)  # the next owner goes on
    await links.relink(APP, G1, "t-3", fence=8)
    assert (await links.get(APP, G1)).target_id == "t-3"


async def test_pending_for_user_lists_groups_whose_member_fact_is_not_applied(state):
    await state.want(APP, G1, [("u1", True)], 100)  # never applied (u1 not provisioned then)
    await state.want(APP, G2, [("u1", True)], 100)
    await state.mark_applied(APP, G2, [("u1", 100)])  # applied
    await state.want(APP, G3, [("u1", False)], 100)  # not a member: nothing to apply for a new account
    await state.want(APP2, G1, [("u1", True)], 100)  # another app
    await state.want(APP, G1, [("u2", True)], 100)  # another user

    assert await state.pending_for_user(APP, "u1") == [G1]

    await state.want(APP, G2, [("u1", True)], 120)  # a newer fact than the one applied
    assert sorted(await state.pending_for_user(APP, "u1")) == sorted([G1, G2])
    await state.mark_applied(APP, G1, [("u1", 100)])
    await state.mark_applied(APP, G2, [("u1", 120)])
    assert await state.pending_for_user(APP, "u1") == []
    assert await state.pending_for_user(APP, "nobody") == []


async def test_members_reads_only_the_named_users(state):
    await state.want(APP, G1, [("u1", True), ("u2", False), ("u3", True)], 100)
    got = await state.members(APP, G1, ["u1", "u2", "missing"])
    assert {u: d["member"] for u, d in got.items()} == {"u1": True, "u2": False}
    assert await state.members(APP, G1, []) == {}


async def test_forget_group_drops_its_members_only(state):
    await state.want(APP, G1, [("u1", True)], 100)
    await state.want(APP, G2, [("u1", True)], 100)
    await state.forget_group(APP, G1)
    assert await state.all_members(APP, G1) == {}
    assert set(await state.all_members(APP, G2)) == {"u1"}


# --- pushed groups --------------------------------------------------------------------------------------------------

async def test_next_group_version_grows_and_does_not_push(state):
    assert await state.next_group_version(APP, G1) == 1
    assert await state.next_group_version(APP, G1) == 2
    assert await state.next_group_version(APP2, G1) == 1  # per (app, group)
    assert await state.next_group_version(APP, G2) == 1
    assert not await state.is_pushed(APP, G1)
    assert await state.apps_pushing(G1) == []
    assert await state.pushed_group_ids() == set()


async def test_set_pushed_and_the_queries_over_pushed_groups(state):
    await state.set_pushed(APP, G1, pushed=True, name="Sales", entry="Sales")
    await state.set_pushed(APP2, G1, pushed=True, name="Sales", entry="00gSALES")
    await state.set_pushed(APP, G2, pushed=True, name="Ops")
    await state.set_pushed(APP, G3, pushed=False, why="never pushed")

    assert sorted(d["app_id"] for d in await state.apps_pushing(G1)) == [APP, APP2]
    assert await state.apps_pushing(G3) == []
    assert await state.pushed_group_ids() == {G1, G2}
    assert sorted(d["group_id"] for d in await state.pushed_of_app(APP)) == sorted([G1, G2])
    assert await state.is_pushed(APP, G1) and not await state.is_pushed(APP, G3)
    assert not await state.is_pushed(APP, "00gUNKNOWN")

    # the version counter and the fields not given survive a set_pushed
    assert await state.next_group_version(APP, G1) == 1
    await state.set_pushed(APP, G1, pushed=False, why="no longer in push_groups")
    [doc] = [d for d in await state.apps_pushing(G1)]
    assert doc["app_id"] == APP2
    await state.set_pushed(APP, G1, pushed=True, name="Sales EU")
    [mine] = [d for d in await state.pushed_of_app(APP) if d["group_id"] == G1]
    assert (mine["name"], mine["entry"], mine["why"]) == ("Sales EU", "Sales", "no longer in push_groups")
    assert await state.next_group_version(APP, G1) == 2
    assert await state.pushed_group_ids() == {G1, G2}
    await state.set_pushed(APP2, G1, pushed=False)
    await state.set_pushed(APP, G1, pushed=False)
    assert await state.pushed_group_ids() == {G2}


# --- orgs -----------------------------------------------------------------------------------------------------------

async def test_two_orgs_never_see_each_others_state(db, state):
    other = GroupState(db, OTHER_ORG)
    await state.set_pushed(APP, G1, pushed=True, name="Sales")
    await state.want(APP, G1, [("u1", True), ("u2", True)], 100, listing="L1")
    assert await state.next_group_version(APP, G1) == 1

    # the other org: same app, group and user ids, nothing of ours visible
    assert await other.apps_pushing(G1) == []
    assert await other.pushed_group_ids() == set()
    assert await other.pushed_of_app(APP) == []
    assert not await other.is_pushed(APP, G1)
    assert await other.all_members(APP, G1) == {}
    assert await other.members(APP, G1, ["u1"]) == {}
    assert await other.pending_for_user(APP, "u1") == []
    assert await other.next_group_version(APP, G1) == 1

    # its writes, listings, marks and forgets do not reach ours
    assert await other.want(APP, G1, [("u1", True)], 50) == ["u1"]  # older than ours, but another key
    assert await other.want(APP, G1, [("u3", True)], 300, listing="X") == ["u3"]
    assert await other.left_since_listing(APP, G1, "X", 300) == 1  # its own u1 only
    await other.mark_applied(APP, G1, [("u2", 100)])
    await other.set_pushed(APP, G1, pushed=False)
    await other.forget_group(APP, G2)

    assert await facts(state) == {"u1": (True, 100), "u2": (True, 100)}
    assert (await state.members(APP, G1, ["u2"]))["u2"]["applied_version"] == 0
    assert await state.is_pushed(APP, G1)
    assert await state.pushed_group_ids() == {G1}
    assert await state.next_group_version(APP, G1) == 2
    assert sorted(await state.pending_for_user(APP, "u1")) == [G1]
    assert await facts(other) == {"u1": (False, 300), "u3": (True, 300)}

    await other.forget_group(APP, G1)
    assert set(await state.all_members(APP, G1)) == {"u1", "u2"}


async def test_a_fenced_off_owners_group_delete_leaves_the_link_and_the_members(db, state):
    """The delete reached the target (an operator's command), but a newer owner of the partition wrote the link
    meanwhile: the old owner neither unlinks nor forgets the group's members (its outcome is stale, not applied)."""
    from okta_bridge.contracts import AuditStep, GroupAction, GroupPlanned
    from scim_dispatcher.groups import GroupDispatcher
    from tests.unit.fakes import app_connector

    app_id, group_id = "0oa1jiraxxxxxxxxxxxx", "00g1salesxxxxxxxxxxx"

    class Target:
        deleted: list[str] = []

        async def delete_group(self, target_id: str) -> None:
            self.deleted.append(target_id)

    links, target = MongoGroupLinks(db, ORG), Target()
    await links.save(app_id, group_id, "t-1", "Sales", 1, fence=7)
    await state.want(app_id, group_id, [("u1", True)], 100)
    groups = GroupDispatcher({app_id: app_connector(app_id)}, {app_id: target}, state, links, None, None)
    plan = GroupPlanned(org=ORG, app_id=app_id, okta_group_id=group_id, version=2, action=GroupAction.DELETE,
                        cause="operator:delete-group by test")
    outcome = await groups.apply_group(plan, fence=6)
    assert outcome.step is AuditStep.SKIPPED_STALE and target.deleted == ["t-1"]
    assert (await links.get(app_id, group_id)).target_id == "t-1"
    assert set(await state.all_members(app_id, group_id)) == {"u1"}
    outcome = await groups.apply_group(plan, fence=8)  # the newer owner's delete goes through
    assert outcome.step is AuditStep.APPLIED and (await links.get(app_id, group_id)).target_id is None
    assert await state.all_members(app_id, group_id) == {}
